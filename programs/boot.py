"""The code that runs inside a sandbox before the untrusted program: scripts, not imports.

`BOOT` is the run's init (the caller's uid; PID 1 of the namespaces where there are some),
`RUN` is what it execs as the run's uid: the audit hook, then main.py. They are strings
because they run in another interpreter (`python -I -S -c`), started by
:func:`gcop.programs.sandbox.run_python`; `MOUNTS` is shared with the namespace probe.
"""

from __future__ import annotations

# Mounts in the run's own mount and PID namespaces, as root there, before any untrusted code.
# ctypes, because Python 3.11 has no mount(2) and one `mount` binary per mount costs an exec.
MOUNTS = """\
import ctypes, os
def _mount(what, where, kind, flags, options):
    libc = ctypes.CDLL(None, use_errno=True)
    code = (lambda s: s.encode() if s is not None else None)
    if libc.mount(code(what), code(where), code(kind), flags, code(options)):
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), where)
def bind_python(tree_fd, mounted):
    # The interpreter's install tree (an O_PATH fd opened before the mounts), bound where
    # the run's uid can reach it: pyenv under /root (mode 700) or one under /tmp still runs.
    where = "/run/gcop-python" if "/run" in mounted else "/tmp/.gcop-python"
    os.mkdir(where, 0o755)
    _mount(f"/proc/self/fd/{tree_fd}", where, None, 4096 | 16384, None)  # MS_BIND | MS_REC
    return where
def private_mounts(dirs, size_mb):
    done = []
    for where in dirs:  # MS_NOSUID | MS_NODEV
        if os.path.isdir(where) and not os.path.islink(where):
            _mount("tmpfs", where, "tmpfs", 2 | 4, f"size={size_mb}m,mode=1777")
            done.append(where)
    _mount("proc", "/proc", "proc", 2 | 4 | 8, "hidepid=2")  # + MS_NOEXEC
    return done
"""

# The init: runs as the caller (-S: it needs no site-packages), as PID 1 of the namespaces
# where there are some. Not preexec_fn: that runs Python between fork and exec, which can
# deadlock when the parent has threads (metrics run in evaluator threads). The interpreter
# may live where the run's uid cannot reach it (pyenv under /root, mode 700) or under a
# private mount, so a descriptor of its install tree is opened first: with a mount namespace
# it is bind-mounted at a reachable path; without one the run is exec'd through it
# (/proc/self/fd/N skips the ancestors' permission checks).
BOOT = (
    MOUNTS
    + """\
import json, resource, sys
with os.fdopen(int(sys.argv[1])) as f:
    cfg = json.load(f)
report = os.fdopen(cfg["report"], "w")
os.set_inheritable(cfg["report"], False)  # the facts file: never the run's to write
def tell(**facts):
    report.write(json.dumps(facts))
    report.flush()
def no_routes():
    try:
        rows = open("/proc/net/snmp").read().splitlines()
        head, values = rows[0].split(), rows[1].split()
        return int(values[head.index("OutNoRoutes")])
    except Exception:
        return 0
try:
    for procs in cfg["cgroups"]:
        with open(procs, "w") as f:
            f.write("0")
    try:  # the OOM killer takes the run, never its init
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("-1000")
    except OSError:
        pass
    exe, uid, work = sys.executable, cfg["uid"], cfg["work"]
    tree, real = os.open(sys.base_prefix, os.O_PATH), os.path.realpath(exe)
    if cfg["mounts"]:
        mounted = private_mounts(cfg["private"], cfg["tmpfs_mb"])
        exe = os.path.join(bind_python(tree, mounted), os.path.relpath(real, sys.base_prefix))
        os.mkdir(work, 0o700)
    for name, text in cfg["files"].items():
        with open(os.path.join(work, name), "w", encoding="utf-8") as f:
            f.write(text)
    if uid is not None:
        for name in ["", *cfg["files"]]:
            os.chown(os.path.join(work, name), uid, uid)
    routes = no_routes() if cfg["count_routes"] else 0
    failed_r, failed_w = os.pipe()
    child = os.fork()
except BaseException as e:
    tell(error=f"the sandbox's init failed: {e!r}")
    raise SystemExit(70)
if child == 0:
    try:
        os.close(failed_r)
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("0")
        except OSError:
            pass
        for kind, soft, hard in cfg["limits"]:
            resource.setrlimit(kind, (soft, hard))
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        if cfg["seccomp"]:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER, a struct sock_fprog
            program = ctypes.create_string_buffer(bytes.fromhex(cfg["seccomp"]))
            class Fprog(ctypes.Structure):
                _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
            fprog = Fprog(len(program.raw) // 8, ctypes.addressof(program))
            if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0):
                raise OSError(ctypes.get_errno(), "seccomp filter refused")
        if uid is not None and not cfg["mounts"] and not (
                os.access(exe, os.X_OK) and os.access(os.__file__, os.R_OK)):
            os.set_inheritable(tree, True)  # no mount namespace to bind it in
            exe = f"/proc/self/fd/{tree}/{os.path.relpath(real, sys.base_prefix)}"
        os.chdir(work)
        os.environ.update(HOME=work, TMPDIR=work)
        os.execv(exe, [exe, "-I", "-c", cfg["run"], str(cfg["hook"]), cfg["refuse"]])
    except BaseException as e:
        os.write(failed_w, repr(e).encode()[:2000])
    os._exit(127)
os.close(failed_w)
for fd in cfg["handover"]:  # the channel and hook pipes: only the run holds them now
    os.close(fd)
start_error = os.read(failed_r, 2000).decode(errors="replace")
while True:
    try:
        pid, status, usage = os.wait4(-1, 0)
    except ChildProcessError:
        tell(error="the run vanished")
        raise SystemExit(70)
    if pid == child:
        break
tell(wait_status=status, cpu_s=usage.ru_utime + usage.ru_stime,
     no_routes=no_routes() - routes if cfg["count_routes"] else 0, start_error=start_error)
"""
)

# The run: the audit hook first (no user code before it), then main.py as __main__. The hook
# reports socket use down a pipe (appending only: nothing can be taken back). With a network
# namespace the kernel refuses and counts the attempt itself, so the hook only reports;
# without one it is the only barrier and refuses too.
RUN = """\
import os, runpy, sys
class SandboxBlocked(PermissionError):
    pass
def hook(event, args, fd=int(sys.argv[1]), refuse=sys.argv[2] == "1", seen=[0],
         events=frozenset({"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
         "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
         "socket.getnameinfo"})):
    if event in events:
        if seen[0] < 8:
            seen[0] += 1
            shown = tuple(a for a in args if type(a).__name__ != "socket")
            try:
                os.write(fd, f"{event} {shown!r}"[:300].encode() + b"\\n")
            except Exception:
                pass
        if refuse:
            raise SandboxBlocked(f"network access is blocked by the sandbox ({event})")
if sys.argv[1] != "-1":
    sys.addaudithook(hook)
del hook
sys.argv = ["main.py"]
runpy.run_path("main.py", run_name="__main__")
"""

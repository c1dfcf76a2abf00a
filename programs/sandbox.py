"""Run untrusted, model-written Python in a separate, limited process.

The child runs `main.py` in a fresh temporary directory (its HOME and TMPDIR, deleted
afterwards), with only PATH, LANG, HOME and TMPDIR in its environment and rlimits on CPU time,
address space, file size, open files and processes. As root, each run gets a fresh
unprivileged uid (no groups, no_new_privs): it cannot write outside its directory, read root's
files or environments, gain privileges from setuid binaries or signal other runs, and whatever
that uid still runs or left in the shared temp dirs afterwards is killed or removed (a child
that left the process group with setsid() included). The network is an empty namespace
(`unshare`) where the machine allows it, plus, always, an audit hook that refuses sockets and
name lookups and reports the attempt ("blocked"). At the deadline the group is SIGKILLed.
Not covered (README, "Code execution"): no seccomp or cgroup (the kernel is shared; memory is
per process), the hook alone is bypassable (ctypes, another program), and without root the
child keeps the caller's uid.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import resource
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

Status = Literal["passed", "failed", "timed_out", "crashed", "blocked"]
MiB = 1 << 20
UID_BASE, UID_COUNT = 1 << 30, 1 << 24
"""Per-run uids: far above login users, systemd's dynamic users and usual subuid ranges."""
_LEASED: set[int] = set()  # uids of runs in progress here: two concurrent runs never share one
_LEASE_LOCK = threading.Lock()
NOBODY = 65534
SHARED_TMP = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
"""World-writable dirs the child could leave files in; swept after a run with a fresh uid."""


@dataclass(frozen=True)
class SandboxResult:
    """`passed`: exit 0; `failed`: an AssertionError ended it (the tests ran and one failed);
    `timed_out`: wall or CPU deadline; `blocked`: it tried the network; `crashed`: anything
    else (exception, exit code, signal, a resource limit). `isolation` says what held it."""

    status: Status
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    reason: str = ""
    truncated: bool = False
    isolation: str = ""
    uid: int | None = None  # the uid the child ran as; None: the caller's

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _tasks(uid: int) -> dict[int, int]:
    """Live (not zombie) processes whose real uid is `uid`, with their thread counts."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, ValueError):
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            fields = dict(line.split(":", 1) for line in lines if ":" in line)
            if fields["Uid"].split()[0] == str(uid) and fields["State"].split()[0] not in "ZX":
                found[int(pid)] = int(fields.get("Threads", "1").strip() or 1)
    return found


@functools.cache
def _netns_prefix() -> tuple[str, ...]:
    """`unshare` with a new, empty network and IPC namespace, or () where the machine refuses
    (a container without CAP_SYS_ADMIN, user namespaces disabled); probed once."""
    if (tool := shutil.which("unshare")) is None:
        return ()
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]  # root needs no userns
    prefix = (tool, *user, "--net", "--ipc", "--")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        if subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0:
            return prefix
    return ()


def _fresh_uid() -> int | None:
    """A uid of its own for this run when we are root (None otherwise); nobody where the uid
    map (a user-namespaced container) lacks the per-run range."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/uid_map").read_text().splitlines():
            first, _, count = map(int, line.split())
            if first <= UID_BASE and first + count >= UID_BASE + UID_COUNT:
                with _LEASE_LOCK:
                    while (uid := UID_BASE + secrets.randbelow(UID_COUNT)) in _LEASED:
                        pass
                    _LEASED.add(uid)
                return uid
    return NOBODY


def _limits(timeout_s: float, memory_mb: int, file_bytes: int, uid: int | None,
            max_processes: int) -> list[tuple[int, int, int]]:  # fmt: skip
    cpu = math.ceil(timeout_s) + 1  # SIGXCPU at the soft limit, SIGKILL one second later
    wanted = [
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, memory_mb * MiB, memory_mb * MiB),
        (resource.RLIMIT_FSIZE, file_bytes, file_bytes),
        (resource.RLIMIT_NOFILE, 256, 256),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    # Per uid: exact for a fresh uid; otherwise "what the uid runs now + headroom".
    if uid is None and Path("/proc/self/status").exists():
        uid, max_processes = os.geteuid(), sum(_tasks(os.geteuid()).values()) + 256
    if uid is not None:
        wanted.append((resource.RLIMIT_NPROC, max_processes, max_processes))
    limits = []
    for kind, soft, hard in wanted:  # never above the current hard limit: that would fail
        cap = resource.getrlimit(kind)[1]
        if cap != resource.RLIM_INFINITY:
            soft, hard = min(soft, cap), min(hard, cap)
        limits.append((kind, soft, hard))
    return limits


# Runs as the caller (-S: it needs no site-packages), then execs the run. Not preexec_fn: that
# runs Python between fork and exec, which can deadlock when the parent has threads (metrics
# run in evaluator threads). The interpreter may live where the sandbox uid cannot reach it
# (pyenv under /root, mode 700): then it is exec'd through a descriptor of its install tree
# opened before the drop (/proc/self/fd/N skips the ancestors' permission checks).
_BOOT = """\
import json, os, resource, sys
cfg = json.loads(sys.argv[1])
for kind, soft, hard in cfg["limits"]:
    resource.setrlimit(kind, (soft, hard))
try:  # before the drop, while ctypes is still readable
    import ctypes
    ctypes.CDLL(None).prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: setuid binaries gain nothing
except Exception:
    pass
exe, uid = sys.executable, cfg["uid"]
if uid is not None:
    tree, real = os.open(sys.base_prefix, os.O_PATH), os.path.realpath(exe)
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if not (os.access(exe, os.X_OK) and os.access(os.__file__, os.R_OK)):
        os.set_inheritable(tree, True)
        exe = f"/proc/self/fd/{tree}/{os.path.relpath(real, sys.base_prefix)}"
os.execv(exe, [exe, "-I", "-c", cfg["run"], str(cfg["report"])])
"""

# The run: the audit hook first (no user code before it), then main.py as __main__. A
# blocked attempt is also written to the report file, so catching the error does not hide it.
_RUN = """\
import os, runpy, sys
class SandboxBlocked(PermissionError):
    pass
def hook(event, args, fd=int(sys.argv[1]), events=frozenset({"socket.connect", "socket.bind",
         "socket.sendto", "socket.sendmsg", "socket.getaddrinfo", "socket.gethostbyname",
         "socket.gethostbyaddr", "socket.getnameinfo"})):
    if event in events:
        shown = tuple(a for a in args if type(a).__name__ != "socket")
        try:
            os.write(fd, f"{event} {shown!r}"[:300].encode() + b"\\n")
        except Exception:
            pass
        raise SandboxBlocked(f"network access is blocked by the sandbox ({event})")
if sys.argv[1] != "-1":
    sys.addaudithook(hook)
del hook
sys.argv = ["main.py"]
runpy.run_path("main.py", run_name="__main__")
"""


def _sweep(uid: int) -> None:
    """Kill what outlived the process group and delete what the run left in shared temp dirs:
    with a fresh uid, everything that uid owns is this run's."""
    for _ in range(100):  # a fork bomb that left the group may still be forking
        for pid in (pids := _tasks(uid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not pids:
            break
        time.sleep(0.005)
    for top in {tempfile.gettempdir(), *SHARED_TMP}:
        with contextlib.suppress(OSError), os.scandir(top) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_uid != uid:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)


def _exits_within(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait on a pidfd where there is one: Popen.wait(timeout) polls, adding up to 50 ms."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        return bool(select.select([fd], [], [], timeout_s)[0])
    finally:
        os.close(fd)


def _tail(f: IO[bytes], cap: int) -> tuple[str, bool]:
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - cap))
    return f.read().decode("utf-8", errors="replace"), size > cap


def run_python(
    source: str,
    *,
    timeout_s: float = 10,
    memory_mb: int = 1024,
    max_output_bytes: int = 1_000_000,
    max_file_bytes: int | None = None,
    max_processes: int = 64,
    allow_network: bool = False,
) -> SandboxResult:
    """Run `source` as a script in a fresh, limited child process; never raises for its faults.

    `max_file_bytes` (default: the larger of 64 MiB and 4 x `max_output_bytes`) bounds every
    file it writes, stdout and stderr included; `max_processes` counts threads too.
    """
    file_bytes = max_file_bytes or max(64 * MiB, 4 * max_output_bytes)
    uid, netns = _fresh_uid(), () if allow_network else _netns_prefix()
    limits = _limits(timeout_s, memory_mb, file_bytes, uid, max_processes)
    with (
        tempfile.TemporaryDirectory(prefix="gcop-sandbox-", ignore_cleanup_errors=True) as tmp,
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryFile() as report,
    ):
        Path(tmp, "main.py").write_text(source, encoding="utf-8")
        if uid is not None:
            for path in (tmp, f"{tmp}/main.py"):
                os.chown(path, uid, uid)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "LANG": os.environ.get("LANG", "C.UTF-8"), "HOME": tmp, "TMPDIR": tmp}  # fmt: skip
        fd = -1 if allow_network else report.fileno()
        cfg = json.dumps({"limits": limits, "uid": uid, "run": _RUN, "report": fd})
        start, timed_out = time.monotonic(), False
        proc = subprocess.Popen(
            [*netns, sys.executable, "-I", "-S", "-c", _BOOT, cfg], cwd=tmp, env=env,
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, pass_fds=(report.fileno(),),
            start_new_session=True,
        )  # fmt: skip
        try:
            timed_out = not _exits_within(proc, timeout_s)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group: also what the child forked
            proc.wait()
            if uid is not None and uid != NOBODY:  # nobody may be shared: leave it alone
                _sweep(uid)
                _LEASED.discard(uid)
        duration = time.monotonic() - start
        stdout, cut_out = _tail(out, max_output_bytes)
        stderr, cut_err = _tail(err, max_output_bytes)
        report.seek(0)
        blocked = report.read(1000).decode("utf-8", errors="replace").splitlines()

    isolation = [f"uid {uid}" if uid is not None else "caller's uid"]
    isolation += ["network namespace"] if netns else []
    isolation.append("network allowed" if allow_network else "socket audit hook")
    code = proc.returncode
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if blocked:
        status, reason = "blocked", f"network access blocked: {blocked[0]}"
    elif timed_out or code == -signal.SIGXCPU:
        status, reason = "timed_out", f"no exit within {timeout_s:g}s (wall or CPU)"
    elif code == 0:
        status, reason = "passed", ""
    elif last.startswith("AssertionError"):
        status, reason = "failed", last
    elif netns and "Network is unreachable" in last:
        status, reason = "blocked", f"network access blocked (no network in the namespace): {last}"
    elif code is not None and code < 0:
        status, reason = "crashed", f"killed by signal {-code} ({signal.strsignal(-code)})"
    else:
        status, reason = "crashed", last or f"exit code {code}"
    return SandboxResult(status, None if timed_out else code, stdout, stderr, duration,
                         reason, cut_out or cut_err, ", ".join(isolation), uid)  # fmt: skip

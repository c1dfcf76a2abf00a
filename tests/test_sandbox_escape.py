"""Escapes from the sandbox, each class with at least two variants (real child processes).

A zombie leader that keeps running, a tree too deep to delete recursively, litter in root's
world-writable /tmp subfolders, reading other processes' command lines, a ctypes connect() to
a host AF_UNIX socket, statuses faked by printing or by signalling itself, memory spread over
many children, and sandbox failures that must not raise. Where a variant depends on what the
machine allows (namespaces, a cgroup), it runs in both the isolated and the fallback mode that
the machine gives, and skips loudly (with the reason) where a mode is unavailable.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dspy
import pytest

from gcop.programs import isolation
from gcop.programs.code import code_metric, run_tests
from gcop.programs.isolation import Isolation, remove_tree
from gcop.programs.sandbox import SandboxResult, run_python

LIMIT_S = 2.0
KERNEL = isolation.probe(False).kernel
CGROUP = isolation.cgroup_base() is not None
needs_kernel = pytest.mark.skipif(not KERNEL, reason="no PID and mount namespaces here")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="a separate uid needs root")
MODES = ["kernel", "fallback"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with the machine's namespaces, then without any (the loud fallback)."""
    if request.param == "kernel" and not KERNEL:
        pytest.skip("no PID and mount namespaces here")
    if request.param == "fallback":
        bare = Isolation(missing=("pid", "mount", "net"))
        monkeypatch.setattr(isolation, "probe", lambda allow_network: bare)
    return request.param


def live_tasks(uid: int) -> list[str]:
    """Every thread of uid `uid` that is not dead, read from /proc/*/task independently: a
    zombie leader whose other thread still runs shows up here."""
    found = []
    for status in Path("/proc").glob("[0-9]*/task/[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
            if fields["Uid"].split()[0] == str(uid) and fields["State"].split()[0] not in "ZX":
                found.append(str(status.parent))
    return found


def run(source: str, **kwargs: object) -> SandboxResult:
    """Through the sandbox with small limits: contained in time, no thread of it left."""
    kwargs = {"timeout_s": LIMIT_S, "memory_mb": 256, **kwargs}
    start = time.monotonic()
    result = run_python(textwrap.dedent(source), **kwargs)  # type: ignore[arg-type]
    assert time.monotonic() - start <= float(kwargs["timeout_s"]) + 2, result  # type: ignore[arg-type]
    if result.uid is not None:
        assert live_tasks(result.uid) == [], result
    return result


# --- the zombie leader ---

ZOMBIE_LEADERS = {
    "main-thread-exits": """
        import ctypes, threading, time
        def work():
            while True:
                print("still running", flush=True)
                time.sleep(0.05)
        threading.Thread(target=work).start()
        time.sleep(0.1)
        ctypes.CDLL(None).pthread_exit(None)  # only the main thread ends
    """,
    "child-zombie-leader-after-exit-0": """
        import ctypes, os, threading, time
        if os.fork() == 0:
            os.setsid()
            threading.Thread(target=lambda: [time.sleep(0.05) for _ in iter(int, 1)]).start()
            ctypes.CDLL(None).pthread_exit(None)
        time.sleep(0.3)
        print("parent done", flush=True)
    """,
}


@needs_root
@pytest.mark.parametrize("name", sorted(ZOMBIE_LEADERS))
def test_zombie_leader_does_not_survive(name: str, mode: str) -> None:
    result = run(ZOMBIE_LEADERS[name])  # `run` asserts no live thread of the uid remains
    assert result.status in {"timed_out", "passed"}, result
    if name == "child-zombie-leader-after-exit-0":
        assert result.passed and result.stdout == "parent done\n"


# --- trees too deep for a recursive clean-up ---

DEEP = """
    import os
    os.chdir({where!r})
    os.makedirs("{marker}", exist_ok=True)
    os.chdir("{marker}")
    for _ in range(1200):
        os.mkdir("d" * 40)
        os.chdir("d" * 40)
    open("leaf.txt", "w").write("x")
    print("deep", flush=True)
"""


@pytest.mark.parametrize("where", ["work-dir", "/tmp"])
def test_deep_tree_is_removed_without_recursion(where: str, mode: str) -> None:
    marker = f"gcop-deep-{uuid.uuid4().hex}"
    target = "." if where == "work-dir" else "/tmp"
    result = run(DEEP.format(where=target, marker=marker), timeout_s=10)
    assert result.passed and result.stdout == "deep\n", result
    assert not Path("/tmp", marker).exists()


def test_remove_tree_is_iterative_and_bounded(tmp_path: Path) -> None:
    """1,200 levels of 40-character names: far past PATH_MAX and the recursion limit."""
    top = tmp_path / "top"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    for _ in range(1200):
        os.mkdir("d" * 40, dir_fd=fd)
        inner = os.open("d" * 40, os.O_RDONLY, dir_fd=fd)
        with open(os.open("f", os.O_CREAT | os.O_WRONLY, dir_fd=inner), "w") as f:
            f.write("x")
        os.close(fd)
        fd = inner
    os.close(fd)
    assert not remove_tree(top, budget=100) and top.exists()  # the budget stops it, no raise
    assert remove_tree(top) and not top.exists()
    assert remove_tree(top)  # already gone


def test_metric_survives_a_deep_tree() -> None:
    example = dspy.Example(prompt="", test="", tests=["assert f() == 1"], entry_point="f",
                           test_setup_code="")  # fmt: skip
    code = textwrap.dedent(DEEP.format(where="/tmp", marker="deep")) + "def f():\n    return 1\n"
    assert code_metric(example, dspy.Prediction(code=code)) == 1.0


# --- litter in root's world-writable subfolders of /tmp ---


@pytest.fixture
def x11_dir() -> Iterator[Path]:
    """/tmp/.X11-unix (root-owned, mode 1777), created for the test if the host lacks it."""
    path = Path("/tmp/.X11-unix")
    made = not path.exists()
    if made:
        path.mkdir()
        path.chmod(0o1777)
    yield path
    if made:
        remove_tree(path)


@needs_root
@pytest.mark.parametrize("sub", [".X11-unix", "shm"])
def test_litter_in_world_writable_subfolders_is_gone(sub: str, mode: str, x11_dir: Path) -> None:
    folder = {".X11-unix": str(x11_dir), "shm": "/dev/shm"}[sub]
    name = f"gcop-litter-{uuid.uuid4().hex}"
    result = run(f"""
        import os
        for path in ({folder!r} + "/{name}", {folder!r} + "/{name}.d/x"):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "w").write("litter")
        print(sorted(os.listdir({folder!r}))[:3], flush=True)
    """)
    assert result.passed, result
    assert not Path(folder, name).exists() and not Path(folder, f"{name}.d").exists()


# --- other processes' command lines ---


@pytest.fixture
def host_process_with_key() -> Iterator[str]:
    key = f"sk-gcop-cmdline-{uuid.uuid4().hex}"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "--api-key", key])
    yield key
    proc.kill()
    proc.wait()


@needs_kernel
@pytest.mark.parametrize("how", ["scan-proc", "proc-of-init-and-parent"])
def test_host_command_lines_are_unreadable(how: str, host_process_with_key: str) -> None:
    key = host_process_with_key
    attempts = {
        "scan-proc": "paths = [f'/proc/{p}/cmdline' for p in os.listdir('/proc') if p.isdigit()]",
        "proc-of-init-and-parent": "paths = ['/proc/1/cmdline', f'/proc/{os.getppid()}/environ',"
        " '/proc/1/root/proc/1/cmdline'] + [f'/proc/{p}/cmdline' for p in range(1, 4000)]",
    }
    result = run(f"""
        import os
        {attempts[how]}
        seen = []
        for path in paths:
            try:
                seen.append(open(path, "rb").read().decode(errors="replace"))
            except OSError:
                pass
        print(len(seen), "|".join(seen))
    """)
    assert result.passed and key not in result.stdout, result
    assert "--api-key" not in result.stdout


# --- host AF_UNIX sockets ---


@pytest.fixture
def unix_server() -> Iterator[tuple[socket.socket, str]]:
    """A world-connectable AF_UNIX server in the host's /tmp that the child must never reach."""
    folder = Path(tempfile.mkdtemp(prefix="gcop-unix-", dir="/tmp"))
    folder.chmod(0o755)
    path = str(folder / "s.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
        srv.bind(path)
        os.chmod(path, 0o777)
        srv.listen(8)
        srv.setblocking(False)
        yield srv, path
    remove_tree(folder)


def accepted(srv: socket.socket) -> int:
    count = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            srv.accept()[0].close()
            count += 1
    return count


UNIX_CONNECTS = {
    "socket-module": "s = socket.socket(socket.AF_UNIX)\ns.connect(PATH)\nprint('CONNECTED')",
    "ctypes-connect": """
        s = socket.socket(socket.AF_UNIX)
        addr = struct.pack("=H", socket.AF_UNIX) + PATH.encode().ljust(108, b"\\0")
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.connect(s.fileno(), addr, len(addr)) == 0:
            print("CONNECTED")
        print("errno", ctypes.get_errno())
    """,
}


@needs_kernel
@pytest.mark.parametrize("how", sorted(UNIX_CONNECTS))
def test_host_unix_socket_is_unreachable(how: str, unix_server) -> None:
    srv, path = unix_server
    attempt = textwrap.indent(
        textwrap.dedent(UNIX_CONNECTS[how]).replace("PATH", repr(path)), "    "
    )
    result = run(
        f"import ctypes, socket, struct\ntry:\n{attempt}\nexcept OSError as e:\n    print(e)\n"
    )
    assert "CONNECTED" not in result.stdout, result
    assert accepted(srv) == 0


# --- statuses faked by the program ---

FAKES = {
    "unreachable-on-stderr": (
        "import sys\nsys.stderr.write('OSError: [Errno 101] Network is "
        "unreachable\\n')\nsys.exit(1)",
        "crashed",
    ),
    "unreachable-on-stdout": ("print('[Errno 101] Network is unreachable')", "passed"),
    "kill-self-sigxcpu": ("import os, signal\nos.kill(os.getpid(), signal.SIGXCPU)", "crashed"),
    "raise-sigxcpu": (
        "import signal, time\nsignal.raise_signal(signal.SIGXCPU)\ntime.sleep(1)",
        "crashed",
    ),
    "assertion-text-exit-0": ("import sys\nsys.stderr.write('AssertionError\\n')", "passed"),
}


@pytest.mark.parametrize("name", sorted(FAKES))
def test_status_comes_from_facts_not_text(name: str) -> None:
    source, expected = FAKES[name]
    result = run(source)
    assert result.status == expected, result
    if "sigxcpu" in name:
        assert result.returncode == -signal.SIGXCPU and "signal" in result.reason


HIDDEN_ATTEMPTS = {
    "close-every-pipe-first": "import stat\nfor fd in range(3, 256):\n    try:\n"
    "        if stat.S_ISFIFO(os.fstat(fd).st_mode):\n            os.close(fd)\n"
    "    except OSError:\n        pass",
    "dup-devnull-over-every-pipe": "import stat\nnull = os.open('/dev/null', os.O_WRONLY)\n"
    "for fd in range(3, 256):\n    try:\n        if stat.S_ISFIFO(os.fstat(fd).st_mode):\n"
    "            os.dup2(null, fd)\n    except OSError:\n        pass",
}


@pytest.mark.skipif("net" not in isolation.probe(False).namespaces, reason="no netns here")
@pytest.mark.parametrize("name", sorted(HIDDEN_ATTEMPTS))
def test_a_hidden_network_attempt_is_still_blocked(name: str) -> None:
    """The kernel counts the packet with no route: silencing the hook's pipe hides nothing."""
    result = run(f"""
        import os, socket
        {textwrap.indent(HIDDEN_ATTEMPTS[name], "        ").strip()}
        try:
            socket.create_connection(("10.1.2.3", 80), timeout=1)
        except OSError as e:
            print(e)
    """)
    assert result.status == "blocked", result


@pytest.mark.parametrize("how", ["write-facts", "list-descriptors"])
def test_run_holds_no_file_of_the_sandbox(how: str, mode: str) -> None:
    """The init's facts file and the config are not among the run's descriptors: it cannot
    write a report of its own (only stdout, stderr and the hook's pipe are open)."""
    result = run(f"""
        import os, stat
        for fd in range(3, 256):
            try:
                info = os.fstat(fd)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                print("FILE", fd)
                if {how!r} == "write-facts":
                    os.write(fd, b'{{"wait_status": 0, "cpu_s": 0, "no_routes": 0}}')
            else:
                print("OTHER", fd, stat.S_IFMT(info.st_mode))
        raise SystemExit(3)
    """)
    assert "FILE" not in result.stdout, result.stdout
    assert result.status == "crashed" and result.returncode == 3, result


# --- seccomp ---

KERNEL_SURFACE = {
    "unshare-a-user-namespace": "libc.unshare(0x10000000)",  # CLONE_NEWUSER
    "ptrace-traceme": "libc.ptrace(0, 0, 0, 0)",
    "keyctl-session-keyring": "libc.syscall(250, 1, None)",  # keyctl(JOIN_SESSION_KEYRING)
}


@pytest.mark.skipif(isolation.seccomp_program() is None, reason="no pyseccomp/libseccomp here")
@pytest.mark.parametrize("name", sorted(KERNEL_SURFACE))
def test_seccomp_refuses_kernel_surface(name: str) -> None:
    """Calls a scored program never needs fail with EPERM (1); threads and subprocesses,
    which it may need, still work."""
    if name.startswith("keyctl") and os.uname().machine != "x86_64":
        pytest.skip("the keyctl number here is x86_64's")
    result = run(f"""
        import ctypes, subprocess, sys, threading
        libc = ctypes.CDLL(None, use_errno=True)
        print({KERNEL_SURFACE[name]}, ctypes.get_errno())
        worker = threading.Thread(target=print, args=("thread",))
        worker.start()
        worker.join()
        print(subprocess.run([sys.executable, "-c", "print(5)"], capture_output=True).stdout)
    """)
    assert result.passed and "seccomp" in result.isolation, result
    assert result.stdout.split("\n")[:3] == ["-1 1", "thread", "b'5\\n'"], result.stdout


# --- memory across children ---

SPREAD = """
    import os, subprocess, sys, time
    HOLD = "b = b'x' * (150 << 20); print('HELD', flush=True); import time; time.sleep(3)"
    if {use_fork}:
        kids = []
        for _ in range(6):
            pid = os.fork()
            if pid == 0:
                try:
                    exec(HOLD)
                    os._exit(0)
                except MemoryError:
                    os._exit(3)
            kids.append(pid)
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in kids]
    else:
        kids = [subprocess.Popen([sys.executable, "-c", HOLD]) for _ in range(6)]
        codes = [kid.wait() for kid in kids]
    print("CODES", codes, flush=True)
"""


@pytest.mark.skipif(not CGROUP, reason="no writable cgroup with memory and pids here")
@pytest.mark.parametrize("use_fork", [True, False], ids=["fork", "subprocess"])
def test_memory_limit_holds_for_the_whole_tree(use_fork: bool) -> None:
    """Six children of 150 MB under a 256 MB limit: at most one can hold its memory through
    the overlapping three seconds; the others are killed by the cgroup's OOM killer.

    The run takes 4 to 6 s on a loaded 2-core machine; it once took over 8 (the old limit)
    with the test suite and a grid both running, so the limit leaves room: what is tested is
    how many children held their memory, not how fast."""
    result = run(SPREAD.format(use_fork=use_fork), timeout_s=30, max_processes=32)
    assert "cgroup" in result.isolation and "no cgroup" not in result.isolation
    codes_line = [line for line in result.stdout.splitlines() if line.startswith("CODES")]
    assert result.passed and codes_line, result
    codes = eval(codes_line[0][len("CODES") :])  # a list of ints printed by the run
    assert len(codes) == 6 and codes.count(0) <= 1, codes


# --- the sandbox's own failures are scored, never raised ---


def test_sandbox_failure_is_a_status(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = Isolation(("/nonexistent/unshare", "--"), ("pid", "mount"))
    monkeypatch.setattr(isolation, "probe", lambda allow_network: broken)
    result = run_python("print('hi')", timeout_s=LIMIT_S)
    assert result.status == "error" and "sandbox error" in result.reason
    example = dspy.Example(prompt="", test="", tests=["assert f() == 1"], entry_point="f",
                           test_setup_code="")  # fmt: skip
    assert code_metric(example, dspy.Prediction(code="def f():\n    return 1\n")) == 0.0


def test_cgroup_failure_falls_back_loudly(monkeypatch, caplog) -> None:
    monkeypatch.setattr(isolation, "cgroup_base", lambda: (2, [Path("/nonexistent/cgroup")]))
    result = run_python("print('hi')", timeout_s=LIMIT_S)
    assert result.passed and "no cgroup" in result.isolation
    assert any("no cgroup for this run" in r.getMessage() for r in caplog.records)


def test_unscorable_examples_are_failures_with_reasons() -> None:
    broken = dspy.Example(prompt="", test="", tests=["assert f(( == 1"], entry_point="f",
                          test_setup_code="")  # fmt: skip
    verdict = run_tests(broken, "def f(x):\n    return 1\n")
    assert not verdict.passed and "SyntaxError" in verdict.reason
    untested = dspy.Example(prompt="", test="", tests=["assert True"], entry_point="f",
                            test_setup_code="")  # fmt: skip
    verdict = run_tests(untested, "def f():\n    return 1\n")
    assert not verdict.passed and "never called" in verdict.reason


def test_isolation_is_reported_and_probe_warns(caplog: pytest.LogCaptureFixture) -> None:
    """What this machine gives every run, spelled out (and a warning for what it lacks)."""
    result = run_python("print('hi')", timeout_s=LIMIT_S)
    iso = isolation.probe(False)
    for name in iso.namespaces:
        assert f"{'network' if name == 'net' else name} namespace" in result.isolation
    assert ("private /tmp" in result.isolation) == iso.kernel
    assert ("no cgroup" in result.isolation) == (not CGROUP)
    assert ("no seccomp" in result.isolation) == (isolation.seccomp_program() is None)
    print("isolation here:", result.isolation)
    sandbox_log = "gcop.programs.sandbox"
    with caplog.at_level("WARNING", logger=sandbox_log):
        isolation.probe.cache_clear()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(isolation.shutil, "which", lambda name: None)
            assert isolation.probe(False) == Isolation(missing=("unshare",))
        isolation.probe.cache_clear()
    assert any("no `unshare`" in r.getMessage() for r in caplog.records)

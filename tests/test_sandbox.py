"""Hostile code through the real sandbox (a real child process, real limits, no mocks).

Each program must be contained within its wall-clock limit plus one second and leave the host
as it was: planted files unchanged and unread, the planted API key unseen, the loopback server
never connected to, and no process of the sandbox's uid alive afterwards.
"""

from __future__ import annotations

import ast
import contextlib
import os
import shutil
import signal
import socket
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gcop.programs import isolation
from gcop.programs.isolation import Isolation
from gcop.programs.sandbox import SandboxResult, run_python

LIMIT_S = 2.0
MEMORY_MB = 256
FILE_LIMIT = 8 << 20
KEY = "sk-gcop-planted-" + uuid.uuid4().hex
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="a separate uid needs root")
HAS_NETNS = "net" in isolation.probe(False).namespaces
needs_netns = pytest.mark.skipif(not HAS_NETNS, reason="no network namespace here")


def alive(uid: int) -> list[int]:
    """Processes (not zombies) whose real uid is `uid`, read from /proc independently."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if fields["Uid"].split()[0] == str(uid) and fields["State"].split()[0] not in "ZX":
                pids.append(int(pid))
    return pids


def run(source: str, **kwargs: object) -> SandboxResult:
    """Run through the sandbox with small limits; contained in time, nothing left running."""
    kwargs = {"timeout_s": LIMIT_S, "memory_mb": MEMORY_MB, **kwargs}
    start = time.monotonic()
    result = run_python(textwrap.dedent(source), **kwargs)  # type: ignore[arg-type]
    assert time.monotonic() - start <= float(kwargs["timeout_s"]) + 1, result  # type: ignore[arg-type]
    if result.uid is not None:
        assert alive(result.uid) == [], result
    return result


@pytest.fixture
def server() -> Iterator[socket.socket]:
    """A TCP server on loopback that the child must never reach."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        srv.setblocking(False)
        yield srv


def connections(srv: socket.socket) -> int:
    count = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            srv.accept()[0].close()
            count += 1
    return count


def test_infinite_loop_times_out() -> None:
    result = run("while True:\n    pass\n")
    assert result.status == "timed_out" and result.returncode is None


def test_ignoring_sigterm_does_not_help() -> None:
    result = run("""
        import signal, time
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        while True:
            time.sleep(0.05)
    """)
    assert result.status == "timed_out"


@needs_root
def test_fork_bomb_is_capped_and_leaves_nothing() -> None:
    """Children leave the process group (setsid), so only the per-uid sweep can find them."""
    result = run("""
        import os, time
        while True:
            try:
                if os.fork() == 0:
                    os.setsid()
                    print(os.getpid(), flush=True)
            except OSError:
                time.sleep(0.01)
    """)
    assert result.status == "timed_out"
    pids = [int(p) for p in result.stdout.split()]
    assert 0 < len(pids) <= 64  # RLIMIT_NPROC (the default max_processes is 64)
    assert result.uid is not None and not set(pids) & set(alive(result.uid))  # none survived


def test_memory_bomb() -> None:
    result = run("chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))\n")
    assert result.status == "crashed" and "MemoryError" in result.reason


def test_disk_filler_stops_at_the_file_size_limit() -> None:
    """Python ignores SIGXFSZ, so a write past RLIMIT_FSIZE fails with EFBIG (27)."""
    result = run(
        """
        import os
        print(os.getcwd())
        try:
            with open("fill.bin", "wb") as f:
                while True:
                    f.write(bytes(1 << 20))
        except OSError as e:
            print(e.errno, os.path.getsize("fill.bin"))
        """,
        max_file_bytes=FILE_LIMIT,
    )
    cwd, errno, size = result.stdout.split()
    assert result.passed and int(errno) == 27 and FILE_LIMIT - (1 << 20) <= int(size) <= FILE_LIMIT
    assert not Path(cwd).exists()  # removed with the temp dir
    uncaught = run("with open('f', 'wb') as f:\n    while True:\n        f.write(bytes(1 << 20))\n",
                   max_file_bytes=FILE_LIMIT)  # fmt: skip
    assert uncaught.status == "crashed" and "File too large" in uncaught.reason


def test_huge_print_is_capped() -> None:
    once = run("print('x' * 30_000_000 + 'END')", max_output_bytes=10_000)
    assert once.passed and once.truncated and once.stdout.endswith("END\n")
    endless = run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
                  max_output_bytes=10_000, max_file_bytes=FILE_LIMIT)  # fmt: skip
    assert endless.status in {"crashed", "timed_out"} and endless.truncated
    for result in (once, endless):
        assert len(result.stdout.encode()) <= 10_000


CONNECTS = {
    "tcp": "s = socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', PORT))",
    "create_connection": "socket.create_connection(('127.0.0.1', PORT), timeout=1)",
    "udp": "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', PORT))",
}


@pytest.mark.parametrize("namespace", [True, False], ids=["netns", "audit-hook-only"])
@pytest.mark.parametrize("how", sorted(CONNECTS))
def test_socket_to_loopback_is_blocked(
    how: str, namespace: bool, server: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocked even when the program catches the error; the fallback still blocks sockets."""
    if namespace and not HAS_NETNS:
        pytest.skip("no network namespace here")
    if not namespace:  # the fallback: no namespaces at all
        monkeypatch.setattr(isolation, "probe", lambda allow_network: Isolation(missing=("net",)))
    port = server.getsockname()[1]
    attempt = textwrap.indent(CONNECTS[how].replace("PORT", str(port)), "    ")
    result = run(f"import socket\ntry:\n{attempt}\nexcept Exception as e:\n    print(repr(e))\n")
    assert result.status == "blocked" and "network access blocked" in result.reason, result
    assert ("network namespace" in result.isolation) == namespace
    assert connections(server) == 0


@needs_netns
def test_namespace_stops_what_bypasses_the_hook(server: socket.socket) -> None:
    """connect(2) through ctypes never reaches the audit hook; the empty namespace stops it."""
    port = server.getsockname()[1]
    result = run(f"""
        import ctypes, socket, struct
        s = socket.socket()
        addr = struct.pack("=H", socket.AF_INET) + struct.pack("!H", {port})
        addr += socket.inet_aton("127.0.0.1") + bytes(8)
        libc = ctypes.CDLL(None, use_errno=True)
        print(libc.connect(s.fileno(), addr, len(addr)), ctypes.get_errno())
    """)
    assert result.stdout.split() == ["-1", "101"]  # ENETUNREACH
    # The kernel counted the packet with no route: blocked, though the hook never saw it.
    assert result.status == "blocked" and result.returncode == 0, result
    assert connections(server) == 0


def test_allowed_network_reaches_the_server(server: socket.socket) -> None:
    """The control: the same server is reachable when the network is allowed."""
    port = server.getsockname()[1]
    result = run(f"import socket\nsocket.create_connection(('127.0.0.1', {port})).close()",
                 allow_network=True)  # fmt: skip
    assert result.passed and connections(server) == 1


def test_planted_api_key_is_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    result = run("""
        import os
        print(sorted(os.environ))
        print(os.environ.get("OPENAI_API_KEY"))
        for pid in os.listdir("/proc"):  # every environment it can read, the parent's first
            try:
                if b"sk-gcop-planted-" in open(f"/proc/{pid}/environ", "rb").read():
                    print("LEAK", pid)
            except OSError:
                pass
    """)
    assert result.passed and KEY not in result.stdout + result.stderr
    if result.uid is not None:  # the caller's uid could read the caller's /proc/PID/environ
        assert "LEAK" not in result.stdout
    names = ast.literal_eval(result.stdout.splitlines()[0])
    assert set(names) <= {"PATH", "LANG", "HOME", "TMPDIR"}


@needs_root
def test_files_outside_the_work_dir_are_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reachable files (world-readable, in a dir any uid can enter) and a root-only secret
    survive every write, delete, rename and chmod; what it leaves in /tmp is swept."""
    host = Path(tempfile.mkdtemp(prefix="gcop-test-host-"))
    try:
        host.chmod(0o755)
        public = host / "public.txt"
        public.write_text("public")
        public.chmod(0o644)
        secret = tmp_path / "secret.txt"
        secret.write_text("top secret")
        secret.chmod(0o600)
        monkeypatch.chdir(host)  # the parent's real cwd
        before = {p: (p.read_bytes(), p.stat()) for p in (public, secret)}
        litter = [f"/tmp/gcop-litter-{uuid.uuid4().hex}", f"/dev/shm/gcop-{uuid.uuid4().hex}"]
        result = run(f"""
            import os
            paths = [{str(public)!r}, {str(secret)!r}, f"/proc/{{os.getppid()}}/cwd/public.txt"]
            attacks = {{
                "append": lambda p: open(p, "a").write("pwned"),
                "truncate": lambda p: open(p, "w").close(),
                "remove": os.remove,
                "rename": lambda p: os.rename(p, p + ".moved"),
                "chmod": lambda p: os.chmod(p, 0o777),
                "read": lambda p: print("READ", p, open(p).read()),
                "create": lambda p: open(os.path.dirname(p) + "/new.txt", "w").close(),
            }}
            for path in paths:
                for name, attack in attacks.items():
                    try:
                        attack(path)
                        print("DID", name, path)
                    except OSError as e:
                        print("denied", name, path, type(e).__name__)
            for path in {litter!r}:
                open(path, "w").write("litter")
                print("LITTER", path)
        """)
        assert result.passed, result
        did = [line for line in result.stdout.splitlines() if line.startswith("DID")]
        # World-readable: readable, unless a private /tmp hides the host's /tmp altogether.
        hidden = "private /tmp" in result.isolation
        assert did == ([] if hidden else [f"DID read {public}"]), did
        assert "top secret" not in result.stdout and "LITTER" in result.stdout
        for path, (data, stat) in before.items():
            now = path.stat()
            assert path.read_bytes() == data and (now.st_mode, now.st_mtime_ns, now.st_uid) == (
                stat.st_mode, stat.st_mtime_ns, stat.st_uid)  # fmt: skip
        assert sorted(p.name for p in host.iterdir()) == ["public.txt"]
        assert not any(Path(p).exists() for p in litter)  # swept: the uid's files, removed
    finally:
        shutil.rmtree(host)


def test_os_exit_leaves_no_stray_process() -> None:
    """os._exit skips every cleanup; a grandchild in a session of its own still dies."""
    result = run("""
        import os, time
        if os.fork() == 0:
            os.setsid()
            print(os.getpid(), flush=True)
            time.sleep(60)
        time.sleep(0.2)
        os._exit(0)
    """)
    assert result.passed and result.duration_s < 1
    pid = int(result.stdout)
    if result.uid is None:  # the caller's uid: nothing to sweep by (see the README)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        pytest.skip("no separate uid: a setsid() grandchild is not swept")
    assert pid not in alive(result.uid)


@needs_root
def test_cannot_signal_the_parent_or_the_host() -> None:
    """kill(-1) reaches every process the uid may signal but the caller: only the run's own
    child here (guarded, so a broken sandbox does not take the machine down)."""
    result = run("""
        import os, signal, time
        if os.getuid() >= 1 << 30:  # the per-run uid range only
            try:
                os.kill(os.getppid(), signal.SIGKILL)
            except OSError as e:
                print(type(e).__name__)
            if (child := os.fork()) == 0:
                time.sleep(60)
                os._exit(0)
            os.kill(-1, signal.SIGKILL)
            print(os.waitpid(child, 0)[1] == signal.SIGKILL)
    """)
    assert result.passed and result.stdout.split() == ["PermissionError", "True"]


def test_isolation_is_reported() -> None:
    """As root: a fresh uid, no groups, and no_new_privs (setuid binaries cannot raise it)."""
    result = run(
        "import os\nprint(os.getuid(), os.getgroups())\nprint(open('/proc/self/status').read())"
    )
    status = dict(line.split(":", 1) for line in result.stdout.splitlines()[1:] if ":" in line)
    assert result.passed and status["NoNewPrivs"].strip() == "1"
    if os.geteuid() == 0:
        assert result.uid is not None and result.stdout.split()[:2] == [str(result.uid), "[]"]
        assert result.isolation.startswith(f"uid {result.uid}")
    assert result.isolation.endswith("socket audit hook")

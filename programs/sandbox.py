"""Run untrusted, model-written Python in a separate, limited process.

What it does: the source runs as `python -I main.py` (isolated mode: no PYTHON* variables, no
user site, no script dir on sys.path) in a fresh temporary directory that is also its HOME
and TMPDIR and is deleted afterwards; the environment is only PATH, LANG, HOME and TMPDIR (no
API keys or tokens leak in); stdin is empty; rlimits, set before the script starts, bound CPU
time, address space, file size, open files and (for a non-root uid) processes; the child
leads its own session, and the whole process group is SIGKILLed at the wall-clock deadline
and again on exit, so stray children do not outlive the run; stdout and stderr go to
anonymous temp files of which only the last `max_output_bytes` are read.

What it does NOT protect against (a later hardening step): the network (no network
namespace), reading any file the uid can read, writing outside the temp dir with the uid's
rights, a process that calls setsid() to leave the group, and running as root, where the
child keeps root's privileges and RLIMIT_NPROC does not apply. Use it to score benchmark
code from models you chose to run, not as a security boundary against an adversary.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

Status = Literal["passed", "failed", "timed_out", "crashed"]
MiB = 1 << 20


@dataclass(frozen=True)
class SandboxResult:
    """`passed`: exit 0; `failed`: an AssertionError ended it (the tests ran and one failed);
    `timed_out`: wall or CPU deadline; `crashed`: anything else (exception, exit code, signal)."""

    status: Status
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    reason: str = ""
    truncated: bool = False

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _user_tasks(uid: int) -> int:
    """Threads now running under `uid`: RLIMIT_NPROC counts all of them, not just ours."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)]:
            total += int(fields.get("Threads", "1").strip() or 1)
    return total


def _limits(timeout_s: float, memory_mb: int, file_bytes: int) -> list[tuple[int, int, int]]:
    cpu = math.ceil(timeout_s) + 1  # SIGXCPU at the soft limit, SIGKILL one second later
    wanted = [
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, memory_mb * MiB, memory_mb * MiB),
        (resource.RLIMIT_FSIZE, file_bytes, file_bytes),
        (resource.RLIMIT_NOFILE, 256, 256),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    # Per uid, so only sane as "what this uid runs now + headroom", and root ignores it.
    if os.geteuid() != 0 and Path("/proc/self/status").exists():
        tasks = _user_tasks(os.geteuid()) + 256
        wanted.append((resource.RLIMIT_NPROC, tasks, tasks))
    limits = []
    for kind, soft, hard in wanted:  # never above the current hard limit: that would fail
        cap = resource.getrlimit(kind)[1]
        if cap != resource.RLIM_INFINITY:
            soft, hard = min(soft, cap), min(hard, cap)
        limits.append((kind, soft, hard))
    return limits


# Sets the limits, then execs the real run (-S: the bootstrap needs no site-packages). Not
# preexec_fn: that runs Python between fork and exec, which can deadlock when the parent has
# threads (metrics run in evaluator threads).
_BOOT = (
    "import json, os, resource, sys\n"
    "for kind, soft, hard in json.loads(sys.argv[1]): resource.setrlimit(kind, (soft, hard))\n"
    "os.execv(sys.executable, [sys.executable, '-I', 'main.py'])\n"
)


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


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown"


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
) -> SandboxResult:
    """Run `source` as a script in a fresh, limited child process; never raises for its faults."""
    file_bytes = max(64 * MiB, 4 * max_output_bytes)  # bounds disk use, incl. stdout/stderr
    limits = json.dumps(_limits(timeout_s, memory_mb, file_bytes))
    with (
        tempfile.TemporaryDirectory(prefix="gcop-sandbox-", ignore_cleanup_errors=True) as tmp,
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
    ):
        Path(tmp, "main.py").write_text(source, encoding="utf-8")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "LANG": os.environ.get("LANG", "C.UTF-8"), "HOME": tmp, "TMPDIR": tmp}  # fmt: skip
        start, timed_out = time.monotonic(), False
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _BOOT, limits], cwd=tmp, env=env,
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
        )  # fmt: skip
        try:
            timed_out = not _exits_within(proc, timeout_s)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group: also what the child forked
            proc.wait()
        duration = time.monotonic() - start
        stdout, cut_out = _tail(out, max_output_bytes)
        stderr, cut_err = _tail(err, max_output_bytes)

    code = proc.returncode
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if timed_out or code == -signal.SIGXCPU:
        status, reason = "timed_out", f"no exit within {timeout_s:g}s (wall or CPU)"
    elif code == 0:
        status, reason = "passed", ""
    elif last.startswith("AssertionError"):
        status, reason = "failed", last
    elif code is not None and code < 0:
        status, reason = "crashed", f"killed by signal {-code} ({_signal_name(-code)})"
    else:
        status, reason = "crashed", last or f"exit code {code}"
    return SandboxResult(status, None if timed_out else code, stdout, stderr, duration,
                         reason, cut_out or cut_err)  # fmt: skip

"""Run untrusted, model-written Python in a separate process that the kernel isolates.

A run is a tree under a trusted *init*: `unshare` starts our boot script as PID 1 of fresh
PID, mount, network, IPC and UTS namespaces; it joins a cgroup (memory and pids of the whole
tree), mounts a private tmpfs over /tmp, /var/tmp, /dev/shm and /run and a fresh /proc
(hidepid=2), writes the work dir there, then forks the run: rlimits, a fresh unprivileged uid
(no groups, no_new_privs), `python -I main.py`. The init waits for it and writes the facts
(wait status, CPU time, the namespace's no-route counter) to a file only it holds; when the
init exits, the kernel kills whatever is left in the namespace and the mounts vanish with it.
The status comes from those facts and the parent's own timer, never from what the run prints.
Where the machine refuses a piece, the run says so in `isolation` and a warning is logged
(:mod:`gcop.programs.isolation`); the older guards (per-uid sweep, audit hook) then carry it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import resource
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from gcop.programs import isolation
from gcop.programs.boot import BOOT, RUN
from gcop.programs.isolation import PRIVATE_DIRS, Cgroup, remove_tree

log = logging.getLogger("gcop.programs.sandbox")

Status = Literal["passed", "failed", "timed_out", "crashed", "blocked", "error"]
MiB = 1 << 20
UID_BASE, UID_COUNT = 1 << 30, 1 << 24
"""Per-run uids: far above login users, systemd's dynamic users and usual subuid ranges."""
_LEASED: set[int] = set()  # uids of runs in progress here: two concurrent runs never share one
_LEASE_LOCK = threading.Lock()
NOBODY = 65534
SHARED_TMP = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
"""World-writable dirs swept by uid after a run that had no private mounts."""
INIT_MB = 48
"""Memory the cgroup allows on top of `memory_mb`, for the init (a small Python process)."""


@dataclass(frozen=True)
class SandboxResult:
    """`passed`: exit status 0; `timed_out`: the parent's wall timer, or a CPU-limit kill
    after the CPU time was spent; `blocked`: it tried the network; `crashed`: a non-zero exit,
    a signal or a limit; `error`: the sandbox itself failed (the run is not to be trusted);
    `failed` is the code metric's (an answer was wrong), never a run's. `reason` may quote the
    run's last stderr line, for people; no status is read from it. `isolation`: what held it."""

    status: Status
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    reason: str = ""
    truncated: bool = False
    isolation: str = ""
    uid: int | None = None  # the uid the child ran as; None: the caller's
    cpu_s: float | None = None  # the run's CPU time, as its init measured it

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _tasks(uid: int) -> dict[int, int]:
    """Processes of real uid `uid` with a live thread, with their thread counts. A zombie
    leader whose other threads still run (its main thread exited) counts: Threads > 1."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, ValueError, KeyError):
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            fields = dict(line.split(":", 1) for line in lines if ":" in line)
            threads = int(fields.get("Threads", "1").strip() or 1)
            dead = fields["State"].split()[0] in "ZX" and threads <= 1
            if fields["Uid"].split()[0] == str(uid) and not dead:
                found[int(pid)] = threads
    return found


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


def _cpu_limit(timeout_s: float) -> int:
    return math.ceil(timeout_s) + 1  # SIGXCPU at this soft limit, SIGKILL one second later


def _limits(timeout_s: float, memory_mb: int, file_bytes: int, uid: int | None,
            max_processes: int) -> list[tuple[int, int, int]]:  # fmt: skip
    cpu = _cpu_limit(timeout_s)
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


def _sweep(uid: int) -> None:
    """Without a PID namespace: kill what outlived the process group and delete what the run
    left in shared temp dirs and in their world-writable subfolders (/tmp/.X11-unix)."""
    for _ in range(100):  # a fork bomb that left the group may still be forking
        for pid in (pids := _tasks(uid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not pids:
            break
        time.sleep(0.005)
    for top in {tempfile.gettempdir(), *SHARED_TMP}:
        for path, owner, shared in _entries(top):
            if owner == uid:
                remove_tree(path)
            elif shared:
                for inner, inner_owner, _ in _entries(path):
                    if inner_owner == uid:
                        remove_tree(inner)


def _entries(top: str) -> list[tuple[str, int, bool]]:
    """(path, owner, is a world-writable dir) of each entry of `top`; [] if unreadable."""
    found = []
    with contextlib.suppress(OSError), os.scandir(top) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                shared = entry.is_dir(follow_symlinks=False) and bool(st.st_mode & 0o002)
                found.append((entry.path, st.st_uid, shared))
    return found


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


def _init_pid(proc: subprocess.Popen[bytes]) -> int | None:
    """The host PID of `unshare`'s forked child (the namespace's init), if it still runs."""
    with contextlib.suppress(OSError, ValueError):
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        return int(children[0]) if children else None
    return None


def _await_exit(pid: int | None, timeout_s: float = 2.0) -> None:
    """Wait until `pid` (not our child) is gone: an init's exit means its namespace is empty."""
    if pid is None:
        return
    with contextlib.suppress(OSError):
        fd = os.pidfd_open(pid)
        try:
            select.select([fd], [], [], timeout_s)
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
    files: Mapping[str, str] | None = None,
    pass_fds: Sequence[int] = (),
) -> SandboxResult:
    """Run `source` as a script in a fresh, limited child process; never raises.

    `max_file_bytes` (default: the larger of 64 MiB and 4 x `max_output_bytes`) bounds every
    file it writes, stdout and stderr included; `max_processes` counts threads too; memory
    and processes also hold for the whole tree where there is a cgroup. `files` are written
    beside main.py. `pass_fds` (pipe ends for a protocol with another process) are handed
    over: the run gets them under the same numbers, and they are closed here.
    """
    handover = list(pass_fds)  # closed exactly once: a second close could hit a reused fd
    try:
        return _run(source, timeout_s, memory_mb, max_output_bytes, max_file_bytes,
                    max_processes, allow_network, dict(files or {}), handover)  # fmt: skip
    except Exception as e:  # the sandbox's own failure is a scored outcome, not a crash
        log.exception("sandbox: the run could not be carried out")
        return SandboxResult("error", None, "", "", 0.0, f"sandbox error: {e!r}")
    finally:
        _close(handover)


def _close(fds: list[int]) -> None:
    while fds:
        with contextlib.suppress(OSError):
            os.close(fds.pop())


def _run(source: str, timeout_s: float, memory_mb: int, max_output_bytes: int,
         max_file_bytes: int | None, max_processes: int, allow_network: bool,
         files: dict[str, str], handover: list[int]) -> SandboxResult:  # fmt: skip
    file_bytes = max_file_bytes or max(64 * MiB, 4 * max_output_bytes)
    iso = isolation.probe(allow_network)
    uid = _fresh_uid()
    limits = _limits(timeout_s, memory_mb, file_bytes, uid, max_processes)
    group: Cgroup | None = None
    if base := isolation.cgroup_base():
        try:
            group = isolation.make_cgroup((memory_mb + INIT_MB) * MiB, max_processes + 4, base)
        except OSError as e:
            log.warning("sandbox: no cgroup for this run (%s): limits are per process", e)
    seccomp = isolation.seccomp_program() or b""
    hook_r, hook_w = os.pipe() if not allow_network else (-1, -1)
    if hook_w >= 0:
        handover.append(hook_w)
    work = (f"/tmp/gcop-sandbox-{secrets.token_hex(8)}" if iso.kernel
            else tempfile.mkdtemp(prefix="gcop-sandbox-"))  # fmt: skip
    start, timed_out, init = time.monotonic(), False, None
    proc: subprocess.Popen[bytes] | None = None
    try:
        with (tempfile.TemporaryFile("w+") as config, tempfile.TemporaryFile() as out,
              tempfile.TemporaryFile() as err, tempfile.TemporaryFile("w+") as report):  # fmt: skip
            json.dump({
                "limits": limits, "uid": uid, "work": work, "mounts": iso.kernel,
                "private": list(PRIVATE_DIRS) if iso.kernel else [], "tmpfs_mb": memory_mb,
                "files": {**files, "main.py": source}, "cgroups": group.procs if group else [],
                "report": report.fileno(), "hook": hook_w, "handover": handover, "run": RUN,
                "refuse": "0" if "net" in iso.namespaces else "1", "seccomp": seccomp.hex(),
                "count_routes": "net" in iso.namespaces,
            }, config)  # fmt: skip
            config.flush()
            config.seek(0)
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                   "LANG": os.environ.get("LANG", "C.UTF-8")}  # fmt: skip
            proc = subprocess.Popen(
                [*iso.prefix, sys.executable, "-I", "-S", "-c", BOOT, str(config.fileno())],
                cwd="/", env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                pass_fds=(config.fileno(), report.fileno(), *handover), start_new_session=True,
            )  # fmt: skip
            _close(handover)
            try:
                timed_out = not _exits_within(proc, timeout_s)
            finally:
                init = _init_pid(proc) if iso.kernel else None
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the group: also what the child forked
                proc.wait()
                _await_exit(init)
            duration = time.monotonic() - start
            stdout, cut_out = _tail(out, max_output_bytes)
            stderr, cut_err = _tail(err, max_output_bytes)
            report.seek(0)
            facts = json.loads(report.read() or "null")
    finally:
        if not iso.kernel:
            if uid is not None and uid != NOBODY:  # nobody may be shared: leave it alone
                _sweep(uid)
            remove_tree(work)
        oom = group.oom_kills() if group else 0
        if group:
            group.remove()
        _LEASED.discard(uid)  # type: ignore[arg-type]
        hooked = b""
        if hook_r >= 0:
            os.set_blocking(hook_r, False)
            with contextlib.suppress(OSError):
                hooked = os.read(hook_r, 1000)
            os.close(hook_r)

    status, code, reason, cpu = _status(facts, timed_out, hooked, oom, stderr, timeout_s)
    described = _describe(iso, uid, group, bool(seccomp), allow_network)
    return SandboxResult(status, code, stdout, stderr, duration, reason, cut_out or cut_err,
                         described, uid, cpu)  # fmt: skip


def _status(facts: dict | None, timed_out: bool, hooked: bytes, oom: int, stderr: str,
            timeout_s: float) -> tuple[Status, int | None, str, float | None]:  # fmt: skip
    """The status from facts: the parent's timer, the init's report (wait status, CPU time,
    the kernel's no-route counter), the hook's pipe and the cgroup's OOM count."""
    if timed_out:
        return "timed_out", None, f"no exit within {timeout_s:g}s (the parent's timer)", None
    if not facts or "error" in facts:
        why = (facts or {}).get("error") or "the sandbox's init ended without a report"
        if oom:
            return "crashed", None, "out of memory (the cgroup's limit)", None
        return "error", None, why, None
    if facts["start_error"]:
        return "error", None, f"the run could not start: {facts['start_error']}", None
    code, cpu = os.waitstatus_to_exitcode(facts["wait_status"]), facts["cpu_s"]
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    said = f" (its stderr: {last})" if last else ""
    if hooked or facts["no_routes"]:
        first = hooked.decode(errors="replace").split("\n")[0] or "a packet with no route"
        return "blocked", code, f"network access blocked: {first}", cpu
    killed = -code if code < 0 else 0
    if killed in (signal.SIGXCPU, signal.SIGKILL) and cpu >= _cpu_limit(timeout_s) - 0.05:
        return "timed_out", code, f"CPU limit: {cpu:.2f}s of CPU time", cpu
    if killed == signal.SIGKILL and oom:
        return "crashed", code, "out of memory (the cgroup's limit)", cpu
    if code == 0:
        return "passed", code, "", cpu
    if killed:
        return "crashed", code, f"killed by signal {killed} ({signal.strsignal(killed)}){said}", cpu
    return "crashed", code, f"exit code {code}{': ' + last if last else ''}", cpu


def _describe(iso: isolation.Isolation, uid: int | None, group: Cgroup | None, seccomp: bool,
              allow_network: bool) -> str:  # fmt: skip
    parts = [f"uid {uid}" if uid is not None else "caller's uid"]
    parts += [f"{'network' if n == 'net' else n} namespace" for n in iso.namespaces]
    if iso.kernel:
        parts += [f"private {' '.join(PRIVATE_DIRS)}", "/proc hidepid=2"]
    parts.append(f"cgroup v{group.version} (memory, pids)" if group else "no cgroup")
    parts.append("seccomp" if seccomp else "no seccomp")
    parts.append("network allowed" if allow_network else "socket audit hook")
    return ", ".join(parts)

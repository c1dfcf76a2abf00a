"""What the kernel can isolate a sandbox run with on this machine, probed once, and the
pieces the parent manages itself: cgroups and a bounded, iterative tree removal.

Every missing piece is logged as a warning when first probed and named in the run's
`isolation` field: the sandbox falls back loudly, never silently.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from gcop.programs.boot import MOUNTS

log = logging.getLogger("gcop.programs.sandbox")

NAMESPACES = ("--pid", "--fork", "--kill-child", "--mount", "--net", "--ipc", "--uts")
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run")
"""Overmounted with a fresh tmpfs in the run's mount namespace: what the run writes there dies
with it, and the host's files and sockets there (/tmp/.X11-unix, /run/dbus) are out of sight."""


@dataclass(frozen=True)
class Isolation:
    """What this machine gives a run: the `unshare` prefix and what it holds."""

    prefix: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()  # of "pid", "mount", "net", "ipc", "uts"
    missing: tuple[str, ...] = field(default=())

    @property
    def kernel(self) -> bool:
        """PID + mount namespaces: the tree dies with its init, /tmp and /proc are private."""
        return {"pid", "mount"} <= set(self.namespaces)


def _works(command: list[str]) -> bool:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    return False


@functools.cache
def probe(allow_network: bool) -> Isolation:
    """Namespaces `unshare` can give here, tried from the most to the least (a container
    without CAP_SYS_ADMIN or with user namespaces off refuses some); probed once per setting."""
    tool = shutil.which("unshare")
    if tool is None:
        log.warning("sandbox: no `unshare` (util-linux): no namespaces; runs share the host's "
                    "PIDs, mounts and network (only an audit hook refuses sockets)")  # fmt: skip
        return Isolation(missing=("unshare",))
    user = () if os.geteuid() == 0 else ("--user", "--map-root-user")
    wanted = [n for n in NAMESPACES if not (allow_network and n == "--net")]
    check = f"{MOUNTS}private_mounts({list(PRIVATE_DIRS)!r}, 16)"
    full = (tool, *user, *wanted, "--")
    if _works([*full, sys.executable, "-I", "-S", "-c", check]):
        names = tuple(n[2:] for n in wanted if n not in ("--fork", "--kill-child"))
        return Isolation(full, names)
    log.warning("sandbox: PID and mount namespaces refused here; the process tree is found by "
                "uid and swept, /tmp and /proc are shared with the host")  # fmt: skip
    if allow_network:
        return Isolation(missing=("pid", "mount"))
    net = (tool, *user, "--net", "--ipc", "--")
    if _works([*net, "true"]):
        return Isolation(net, ("net", "ipc"), missing=("pid", "mount"))
    log.warning("sandbox: no network namespace here; only a (bypassable) audit hook refuses "
                "sockets")  # fmt: skip
    return Isolation(missing=("pid", "mount", "net"))


# --- seccomp: system calls a scored program never needs ---

DENIED_SYSCALLS = (
    "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2", "pivot_root",
    "chroot", "unshare", "setns", "keyctl", "add_key", "request_key", "bpf",
    "perf_event_open", "userfaultfd", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "open_by_handle_at", "name_to_handle_at",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "swapon", "swapoff", "reboot",
    "acct", "syslog", "quotactl", "fanotify_init", "fsopen", "fsmount", "fsconfig",
    "move_mount", "open_tree",
)  # fmt: skip
"""Refused with EPERM: debugging other processes, namespaces and mounts, kernel keyrings,
BPF, perf, userfaultfd, io_uring, modules: the kernel surface exploits go through."""


@functools.cache
def seccomp_program() -> bytes | None:
    """The run's seccomp filter as a BPF program (allow all but DENIED_SYSCALLS), compiled
    once by libseccomp through `pyseccomp`; the run's init installs it with one prctl, so no
    run imports a library for it. None, with a warning, where either is missing."""
    try:
        import pyseccomp

        rules = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
        for name in DENIED_SYSCALLS:
            with contextlib.suppress(Exception):  # not a system call on this architecture
                rules.add_rule(pyseccomp.ERRNO(errno.EPERM), name)
        with tempfile.TemporaryFile() as out:
            rules.export_bpf(out)
            out.seek(0)
            return out.read()
    except Exception as e:  # ImportError, or no libseccomp.so.2 on the machine
        log.warning("sandbox: no seccomp filter (%r); install pyseccomp and libseccomp2 for "
                    "one", e)  # fmt: skip
        return None


# --- cgroups: memory and process count of the whole tree ---


@dataclass
class Cgroup:
    """One run's cgroup(s): v2 (one directory) or v1 (a memory and a pids directory)."""

    version: int
    dirs: list[Path]

    @property
    def procs(self) -> list[str]:
        """Files the run's init writes its own pid to (`0`: the writer) to join."""
        return [str(d / "cgroup.procs") for d in self.dirs]

    def oom_kills(self) -> int:
        """How many processes the kernel killed for hitting the memory limit: a fact."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        for d in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                for line in (d / name).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        return 0

    def remove(self) -> None:
        """Kill what is left (v2), then rmdir, retrying briefly while the dying tree exits."""
        for d in self.dirs:
            with contextlib.suppress(OSError):
                if self.version == 2:
                    (d / "cgroup.kill").write_text("1")
            for _ in range(200):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.005)
            else:
                log.warning("sandbox: cgroup %s still busy; left in place", d)


def _own_path(controller: str) -> str | None:
    """This process's cgroup path for a v1 `controller`, or for v2 with ''."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            if (controller == "" and names == "") or controller in names.split(","):
                return path
    return None


def _mount_point(fstype: str, option: str | None) -> Path | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            kind, _, options = right.split(" ", 2)
            if kind == fstype and (option is None or option in options.split(",")):
                return Path(left.split()[4])
    return None


def _v2_base() -> Path | None:
    root, own = _mount_point("cgroup2", None), _own_path("")
    if root is None or own is None:
        return None
    base = root / own.lstrip("/")
    controllers = (base / "cgroup.controllers").read_text().split()
    if not {"memory", "pids"} <= set(controllers):
        return None
    with contextlib.suppress(OSError):  # may already be on; the root cgroup always allows it
        (base / "cgroup.subtree_control").write_text("+memory +pids")
    return base


def _v1_bases() -> list[Path] | None:
    bases = []
    for controller in ("memory", "pids"):
        root, own = _mount_point("cgroup", controller), _own_path(controller)
        if root is None or own is None:
            return None
        bases.append(root / own.lstrip("/"))
    return bases


def make_cgroup(memory_bytes: int, pids: int, base: tuple[int, list[Path]] | None) -> Cgroup:
    """A fresh cgroup under `base` (from :func:`cgroup_base`) with the two limits set."""
    assert base is not None
    version, parents = base
    name = f"gcop-sandbox-{secrets.token_hex(6)}"
    group = Cgroup(version, [])
    try:
        for parent in parents:
            (parent / name).mkdir()
            group.dirs.append(parent / name)
        if version == 2:
            d = group.dirs[0]
            (d / "memory.max").write_text(str(memory_bytes))
            with contextlib.suppress(OSError):  # no swap accounting: nothing to turn off
                (d / "memory.swap.max").write_text("0")
            (d / "pids.max").write_text(str(pids))
        else:
            memory, pid = group.dirs
            (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
            with contextlib.suppress(OSError):  # only with swap accounting
                (memory / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
            (pid / "pids.max").write_text(str(pids))
    except OSError:
        group.remove()
        raise
    return group


@functools.cache
def cgroup_base() -> tuple[int, list[Path]] | None:
    """Where this process may create per-run cgroups with memory and pids limits (v2 first,
    then v1), checked by creating and removing one; None (and a warning) where it may not."""
    for version, find in ((2, _v2_base), (1, _v1_bases)):
        with contextlib.suppress(OSError, ValueError):
            found = find()
            if found is None:
                continue
            base = (version, [found] if isinstance(found, Path) else found)
            make_cgroup(64 << 20, 16, base).remove()
            return base
    log.warning(
        "sandbox: no writable cgroup with memory and pids controllers here: memory and "
        "process limits hold per process and per uid, not for the whole tree"
    )
    return None


# --- clean-up that cannot raise or recurse ---


def remove_tree(path: str | os.PathLike[str], budget: int = 200_000) -> bool:
    """Delete `path` (a file or a whole tree) without recursion and without following
    symlinks, visiting at most `budget` entries; True when it is gone. Never raises.

    Hand-written because Python 3.11's shutil.rmtree recurses once per level: a 1,200-deep
    tree raises RecursionError. This walks down and back up ('..', checked against the
    parent it came from) with one open descriptor, so depth costs neither stack nor fds.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return True
    except OSError:  # a file, a symlink or a socket
        with contextlib.suppress(OSError):
            os.unlink(path)
        return not os.path.lexists(path)
    chain: list[tuple[str, os.stat_result]] = []
    try:
        while budget > 0:
            sub = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    budget -= 1
                    if entry.is_dir(follow_symlinks=False):
                        sub = entry.name
                        break
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.name, dir_fd=fd)
            if sub is not None:
                child = os.open(sub, flags, dir_fd=fd)
                chain.append((sub, os.fstat(fd)))
                os.close(fd)
                fd = child
                continue
            if not chain:
                break
            name, parent = chain.pop()
            up = os.open("..", flags, dir_fd=fd)
            os.close(fd)
            fd = up
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (parent.st_dev, parent.st_ino):
                raise OSError(f"{path}: a directory moved during removal")
            os.rmdir(name, dir_fd=fd)
    except OSError as e:
        log.warning("sandbox: could not remove %s: %s", path, e)
        return False
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(path)
    if os.path.lexists(path):
        log.warning("sandbox: %s not removed within %d entries", path, budget)
        return False
    return True

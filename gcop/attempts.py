"""A record that a cell of a grid started, so that a run killed without warning is named.

The kernel's out-of-memory killer sends SIGKILL, which no handler sees: a grid killed that
way stops mid-cell with nothing in its log, and the rerun used to start the cell again as
if for the first time (twice in a row on MATH-500, docs/experiments.md). So before a cell
runs, `<cell>.attempts.json` is written beside its result file with when, where and in
which process it started; the finished cell removes it. A rerun that finds one knows the
earlier attempts died, says so (with where to look: `dmesg`), and keeps them in the cell's
result. Written by hand: this is bookkeeping of gcop's own cell files, which no library does.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gcop.atomic import write_json


def attempts_path(result_path: Path) -> Path:
    """`cells/<method>/<core>/seed-0.json` -> `.../seed-0.attempts.json`."""
    return result_path.with_name(f"{result_path.stem}.attempts.json")


def earlier_attempts(result_path: Path) -> list[dict[str, Any]]:
    """The attempts at this cell that started and never finished (oldest first)."""
    path = attempts_path(result_path)
    return json.loads(path.read_text()) if path.exists() else []


def begin_attempt(result_path: Path) -> list[dict[str, Any]]:
    """Record that this process starts the cell; return the earlier, unfinished attempts."""
    earlier = earlier_attempts(result_path)
    this = {"started": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": socket.gethostname(), "pid": os.getpid()}  # fmt: skip
    write_json(attempts_path(result_path), [*earlier, this])
    return earlier


def end_attempt(result_path: Path) -> None:
    """The cell's result is written: no attempt is left unfinished."""
    attempts_path(result_path).unlink(missing_ok=True)


def still_running(attempt: dict[str, Any]) -> bool | None:
    """Whether the attempt's process is alive; None when it ran on another host (which
    cannot be told from here)."""
    if attempt.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(attempt["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def describe(attempt: dict[str, Any]) -> str:
    """One attempt in words, with what to check when it died."""
    where = f"started {attempt['started']} by process {attempt['pid']} on {attempt['host']}"
    running = still_running(attempt)
    if running is None:
        return f"{where} (another host: whether it still runs cannot be told from here)"
    if running:
        return f"{where}, which is still running"
    return (f"{where}, which ended without finishing it (killed? the kernel's out-of-memory "
            "killer leaves no trace in the log: see `dmesg | grep -i kill`)")  # fmt: skip


def peak_rss_gib() -> float:
    """This process's peak resident memory so far, in GiB."""
    import resource  # Unix only, as is what fills this machine's memory in a grid

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**30 if sys.platform == "darwin" else 2**20), 2)  # bytes on macOS

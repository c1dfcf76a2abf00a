"""Atomic writes: write beside the target, then rename, so a crash never leaves half a file.

Every "write aside, then rename" in gcop goes through here: a reader (or a resumed run) sees
either the old target or the complete new one, never a partial one. The partial name carries
the writer's pid, so that processes writing the same target (ranks of one launch) never
share a partial file.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.partial")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a scratch path beside `path`; write the file there. On a clean exit it replaces
    `path` in one rename; on an exception it is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(path)
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty scratch folder beside `path`; fill it. On a clean exit it replaces the
    folder `path` (an old one is moved aside first, then deleted); on an exception it is
    deleted and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(path)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    old = path.with_name(f".{path.name}.{os.getpid()}.old")
    try:
        yield partial
        if path.exists():  # a folder cannot be replaced by a rename onto it: move it aside
            os.replace(path, old)
        os.replace(partial, path)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as partial:
        partial.write_text(text)
    return path


def write_json(path: Path, data: Any) -> Path:
    """JSON with 2-space indents; values JSON cannot hold are written as their `str`."""
    return write_text(path, json.dumps(data, indent=2, default=str))

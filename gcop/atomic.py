"""Atomic file writes: write beside the target, then rename, so a crash never leaves half a file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")  # one per writer
    partial.write_text(text)
    os.replace(partial, path)
    return path


def write_json(path: Path, data: Any) -> Path:
    """JSON with 2-space indents; values JSON cannot hold are written as their `str`."""
    return write_text(path, json.dumps(data, indent=2, default=str))

"""Reports that move between machines: absolute paths written relative to what they sit in.

A report's model strings (ledger keys, config) name adapters inside the run folder and
models inside gcop's models folder by absolute path; written as they are, a report says
where one machine kept its files. :func:`portable` rewrites every string in a JSON-like value
so that a path inside `root` (the folder the report is written to) becomes relative to it,
and a model under `$GCOP_HOME/models` becomes its name (which `local/<name>` resolves).
This is a textual rewrite of known prefixes, not a parse of model strings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gcop.calls import default_home


def models_dir() -> Path:
    """Where `local/<name>` models live: `$GCOP_MODELS_DIR`, default `$GCOP_HOME/models`."""
    return Path(os.environ.get("GCOP_MODELS_DIR") or default_home() / "models")


def portable(data: Any, root: str | Path) -> Any:
    """`data` with absolute paths under `root` made relative to it, and paths under the
    models folder made model names; dict keys are rewritten too."""
    prefixes = [(str(Path(p).resolve()) + os.sep, "") for p in (root, models_dir())]
    prefixes += [(str(Path(p).absolute()) + os.sep, "") for p in (root, models_dir())]

    def rewrite(value: Any) -> Any:
        if isinstance(value, str):
            for prefix, replacement in prefixes:
                value = value.replace(prefix, replacement)
            return value
        if isinstance(value, dict):
            return {rewrite(k): rewrite(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [rewrite(v) for v in value]
        return value

    return rewrite(data)

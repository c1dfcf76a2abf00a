"""Compile algorithms for GCoP programs (ExecTune and its baselines), one per module.

Each is a `dspy.teleprompt.Teleprompter` (see :mod:`gcop.optimizers.base`) and registers
itself with `@register_optimizer(name)`; :func:`register_all` is this package's
`gcop.optimizers` entry point. Names are imported lazily (PEP 562), so `import
gcop.optimizers` stays cheap.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

_EXPORTS = {
    "ExecTune": "gcop.optimizers.exectune",
    "GcopOptimizer": "gcop.optimizers.base",
    "StageDir": "gcop.optimizers.base",
    "SamplingConfig": "gcop.optimizers.sampling",
    "SFTStageConfig": "gcop.optimizers.sft",
    "RLStageConfig": "gcop.optimizers.rl",
    "RewardWeights": "gcop.optimizers.reward",
}
__all__ = [*_EXPORTS, "register_all"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register_all() -> None:
    """Import every module of this package (each optimizer registers itself)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")

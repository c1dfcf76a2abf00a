"""gcop: a small trainable guide writes a typed strategy; a black-box core LLM executes it.

    from gcop import GCoP, Guide, Core, CoreOnly, ExecTune, evaluate, executability

Importing `gcop` is cheap and changes nothing: each name below is imported on first use
(PEP 562), so `gcop --help` never loads torch, LiteLLM or DSPy. The `local/` LiteLLM
provider is registered when the first model-calling module (`gcop.lm`) is imported.
Optimizers (`ExecTune`) are found through the registry, not imported by the kernel.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GCoP": "gcop.program",
    "Guide": "gcop.program",
    "Core": "gcop.program",
    "CoreOnly": "gcop.program",
    "evaluate": "gcop.metrics",
    "executability": "gcop.metrics",
    "Report": "gcop.metrics",
    "Strategy": "gcop.strategy",
    "Validity": "gcop.strategy",
    "Verdict": "gcop.strategy",
    "Task": "gcop.task",
    "GcopLM": "gcop.lm",
    "CallCache": "gcop.calls",
    "CostLedger": "gcop.calls",
    "default_cache": "gcop.calls",
    "set_default_cache": "gcop.calls",
    "track_calls": "gcop.calls",
    "register_task": "gcop.registry",
    "register_optimizer": "gcop.registry",
    "register_dataset": "gcop.registry",
    "get_task": "gcop.registry",
}
_OPTIMIZERS = {"ExecTune": "exectune"}  # name -> registry key (the kernel never imports them)

__all__ = [*_EXPORTS, *_OPTIMIZERS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _OPTIMIZERS:
        from gcop.registry import optimizers

        value = optimizers[_OPTIMIZERS[name]]
    else:
        raise AttributeError(f"module 'gcop' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

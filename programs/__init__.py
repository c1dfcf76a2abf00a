"""Task programs gcop optimizes (math, code): data, strategy types and metrics.

Each module registers what it defines (`register_task`, `register_dataset`) when imported;
:func:`register_all`, this package's `gcop.programs` entry point, imports every module here,
so a new benchmark is one new file in this folder.
"""

from __future__ import annotations

import importlib
import pkgutil

from gcop.registry import get_task
from gcop.task import Task

__all__ = ["Task", "get_task", "register_all"]


def register_all() -> None:
    """Import every module of this package (each registers its tasks and datasets)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")

"""What the kernel needs to know about a task, without importing any task program.

A task program (in `gcop.programs`) builds a :class:`Task`: its strategy type (which names
the task signature), a metric, how to load its fixed splits, and token budgets. The kernel
(evaluation, benchmarks, optimizers) works on any `Task`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dspy

from gcop.strategy import Strategy

Metric = Callable[[dspy.Example, dspy.Prediction], float]
"""1.0 when the prediction solves the example, 0.0 otherwise (fractions allowed)."""


@dataclass(frozen=True)
class Task:
    name: str
    strategy_type: type[Strategy]
    metric: Metric
    load_split: Callable[[str], list[dspy.Example]]
    """`load_split("train" | "dev" | "test")` -> examples with their inputs marked."""
    guide_max_tokens: int = 256
    core_max_tokens: int = 384
    description: str = ""
    core_demo: Callable[[dspy.Example], dspy.Example] | None = None
    """A training example as a demonstration for the core alone (its inputs and every output
    field: the reference solution written out, then the answer), or None when the task has
    none. It builds the control every few-shot guide needs: the core shown the same
    problems as the guide, directly (`gcop.optimizers.exectune.core_with_guide_demos`), and
    the worked solutions DSPy's optimizers are given (laid over the training example, whose
    other fields the metric reads: `gcop.optimizers.methods.worked_in_order`)."""

    @property
    def signature(self) -> type[dspy.Signature]:
        return self.strategy_type.task

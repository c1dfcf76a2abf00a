"""Typed strategies: the plan a guide writes and a core executes.

A strategy type is a pydantic model in the spirit of a DSPy signature: its fields *are* the
format the guide must produce, its docstring is the instruction. A strategy is *valid* when
the guide's output parses into the type, meets the type's constraints and length budget,
and does not leak the task's answer. Validity is always a value (:class:`Validity`) with a
reason, never an exception, because an invalid strategy is a normal, scored outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

import dspy
from pydantic import BaseModel, ConfigDict


class Verdict(StrEnum):
    """Why a strategy is or is not valid; `VALID` is the only passing verdict."""

    VALID = "valid"
    UNPARSEABLE = "unparseable"
    CONSTRAINT = "constraint"
    OVER_BUDGET = "over_budget"
    LEAK = "leak"


@dataclass(frozen=True)
class Validity:
    """The outcome of checking one guide output against its strategy type."""

    verdict: Verdict
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.VALID

    def __bool__(self) -> bool:
        return self.ok

    @classmethod
    def valid(cls) -> Validity:
        return cls(Verdict.VALID)


class Strategy(BaseModel):
    """Base class of every strategy type.

    Subclasses declare pydantic fields (the format), a docstring (the guide's instruction),
    `task` (the dspy.Signature of the task the strategy is for: its inputs are what the
    guide reads, its outputs what the core must produce), and may override
    :meth:`violations` for constraints that pydantic fields cannot state and
    :meth:`leaks` for the per-task leak check.
    """

    model_config = ConfigDict(extra="forbid")

    task: ClassVar[type[dspy.Signature]]
    max_chars: ClassVar[int] = 1200
    """Length budget of the rendered strategy: a plan longer than this is not a plan."""

    def render(self) -> str:
        """The text the core reads. Override for a task-specific layout."""
        lines = []
        for name, value in self.model_dump().items():
            if isinstance(value, list):
                lines.append(f"{name}:")
                lines.extend(f"{i}. {item}" for i, item in enumerate(value, 1))
            else:
                lines.append(f"{name}: {value}")
        return "\n".join(lines)

    def violations(self) -> list[str]:
        """Constraint violations beyond the field types; empty means none."""
        return []

    def leaks(self, example: dspy.Example) -> str | None:
        """Return a reason if this strategy gives away `example`'s answer, else None."""
        return None

    def check(self, example: dspy.Example | None = None) -> Validity:
        """Constraints, budget and (when the example is known) the leak check, in that order."""
        if problems := self.violations():
            return Validity(Verdict.CONSTRAINT, "; ".join(problems))
        if (size := len(self.render())) > self.max_chars:
            return Validity(Verdict.OVER_BUDGET, f"{size} chars > budget {self.max_chars}")
        if example is not None and (reason := self.leaks(example)):
            return Validity(Verdict.LEAK, reason)
        return Validity.valid()

    @classmethod
    def parse(cls, value: Any) -> Strategy:
        """Parse a dict, a JSON string or an instance; raises pydantic.ValidationError."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls.model_validate_json(value)
        return cls.model_validate(value)

    @classmethod
    def task_inputs(cls) -> list[str]:
        return list(cls.task.input_fields)

    @classmethod
    def task_outputs(cls) -> list[str]:
        return list(cls.task.output_fields)

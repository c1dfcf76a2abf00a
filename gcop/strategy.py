"""Typed strategies: the plan a guide writes and a core executes.

A strategy type is a pydantic model in the spirit of a DSPy signature: its fields *are* the
format the guide must produce, its docstring is the instruction. A strategy is *valid* when
the guide's output parses into the type, meets the type's constraints and length budget,
and does not leak the task's answer. Validity is always a value (:class:`Validity`) with a
reason, never an exception, because an invalid strategy is a normal, scored outcome.

The text form a guide writes is `render()`: for a type with one list field, plain numbered
lines; otherwise `Header: value` lines. `from_text` reads that form back exactly, and
repairs near misses (JSON, fenced or inside prose, steps written as objects, bullets): a
repaired strategy is usable but counted as its own verdict, `REPAIRED`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

import dspy
from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from gcop.repair import field_header, list_fields, parse_layout, repair


class Verdict(StrEnum):
    """Why a strategy is or is not valid. `VALID` and `REPAIRED` (a near miss read
    leniently, see :func:`gcop.repair.repair`) pass; the others do not."""

    VALID = "valid"
    REPAIRED = "repaired"
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
        return self.verdict in (Verdict.VALID, Verdict.REPAIRED)

    def __bool__(self) -> bool:
        return self.ok

    @classmethod
    def valid(cls) -> Validity:
        return cls(Verdict.VALID)


class StrategyParseError(ValueError):
    """A guide's text that no repair turns into the strategy type; the message says why."""


class Strategy(BaseModel):
    """Base class of every strategy type.

    Subclasses declare pydantic fields (the format), a docstring (the guide's instruction),
    `task` (the dspy.Signature of the task the strategy is for: its inputs are what the
    guide reads, its outputs what the core must produce), and may override
    :meth:`violations` for constraints that pydantic fields cannot state and
    :meth:`leaks` for the per-task leak check.
    """

    model_config = ConfigDict(extra="forbid")
    _repair: str | None = PrivateAttr(default=None)
    """How the text was repaired into this strategy (None: it was written exactly)."""

    task: ClassVar[type[dspy.Signature]]
    max_chars: ClassVar[int] = 1200
    """Length budget of the rendered strategy: a plan longer than this is not a plan."""

    def render(self) -> str:
        """The text the guide writes and the core reads: numbered lines for a type with
        one list field, else a `Header: value` line per scalar field and a `Header:` line
        followed by numbered lines per list field. Override for a task-specific layout
        (and keep :meth:`from_text` able to read it)."""
        data = self.model_dump()
        if len(data) == 1 and list_fields(type(self)):
            return "\n".join(f"{i}. {item}" for i, item in enumerate(next(iter(data.values())), 1))
        lines = []
        for name, value in data.items():
            if isinstance(value, list):
                if value:
                    lines.append(f"{field_header(name)}:")
                    lines.extend(f"{i}. {item}" for i, item in enumerate(value, 1))
            else:
                lines.append(f"{field_header(name)}: {value}")
        return "\n".join(lines)

    @classmethod
    def response_format(cls) -> dict[str, Any]:
        """The OpenAI/LiteLLM `response_format` that makes a model write this type's JSON
        (API models decode under it; `local/` models through a logits processor). Not
        `strict`: OpenAI's strict mode refuses schemas with optional fields (CodePlan's
        `edge_cases`), and the result is validated here anyway."""
        return {
            "type": "json_schema",
            "json_schema": {"name": cls.__name__, "schema": cls.model_json_schema()},
        }

    @property
    def repaired(self) -> str | None:
        """How this strategy was repaired from the guide's text; None if written exactly."""
        return self._repair

    @classmethod
    def from_text(cls, text: str) -> Strategy:
        """Read a guide's reply: the `render()` layout exactly, else a repaired near miss
        (marked, see :attr:`repaired`). Raises `StrategyParseError` with the reason."""
        text = (text or "").strip()
        layout = parse_layout(cls, text)
        if layout is not None:
            try:
                return cls.model_validate(layout)
            except ValidationError:
                pass
        if text.startswith("{"):  # the type's JSON as it is: what constrained decoding writes
            try:
                return cls.model_validate_json(text)
            except ValidationError:
                pass
        result = repair(cls, text)
        if isinstance(result, str):
            raise StrategyParseError(result)
        strategy, how = result
        strategy._repair = how
        return strategy

    def violations(self) -> list[str]:
        """Constraint violations beyond the field types; empty means none."""
        return []

    @classmethod
    def from_reference(cls, example: dspy.Example, *, givens_only: bool = False) -> Strategy | None:
        """A plan derived from the example's reference solution, or None when the task has
        no such derivation. ExecTune's "reference" teacher uses it: a free source of
        strategies that still go through the acceptance filter (validity, leak, core).
        `givens_only` ("reference-givens"): keep the plan's structure but hide the values
        the problem does not state, where the type knows how (a small guide trained on
        intermediate results learns to invent them)."""
        return None

    def leaks(self, example: dspy.Example) -> str | None:
        """Return a reason if this strategy gives away `example`'s answer, else None."""
        return None

    def without_computed_values(self, inputs: dict[str, Any]) -> Strategy:
        """This strategy with every value its writer computed hidden (what `inputs` do not
        state), so that it can say what to compute but never a result, the answer
        included; deployment has no gold answer to run `leaks` against, this needs none.
        The base type cannot tell values apart and returns the strategy unchanged."""
        return self

    def check(self, example: dspy.Example | None = None) -> Validity:
        """Constraints, budget and (when the example is known) the leak check, in that order."""
        if problems := self.violations():
            return Validity(Verdict.CONSTRAINT, "; ".join(problems))
        if (size := len(self.render())) > self.max_chars:
            return Validity(Verdict.OVER_BUDGET, f"{size} chars > budget {self.max_chars}")
        if example is not None and (reason := self.leaks(example)):
            return Validity(Verdict.LEAK, reason)
        if self._repair:
            return Validity(Verdict.REPAIRED, f"read leniently: {self._repair}")
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

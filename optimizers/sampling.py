"""Stage 1 of ExecTune: teacher-guided acceptance sampling.

One or more strategy *sources* write candidate strategies per training example, in the
guide's strategy type: an LLM teacher (any LiteLLM model string, K samples per example), or
`"reference"`, which derives one plan per example from its reference solution
(`Strategy.from_reference`: free, and as close to an oracle plan as the data allows), or
`"reference-givens"`, the same plan with every value the problem does not state hidden. A
candidate is *accepted* only if it is valid (parses, exactly or repaired; meets its
constraints and budget; does not leak the answer) and the core, following it, succeeds by
the task metric. The acceptance rate per source is that source's executability on this
core. Every call goes through the call cache, so a rerun repeats no core call.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dspy

from gcop.atomic import write_text
from gcop.errors import ConfigError, GcopError
from gcop.program import GCoP, Guide
from gcop.strategy import Strategy, Verdict
from gcop.task import Metric

log = logging.getLogger(__name__)

REFERENCE_FIELD = "reference_solution"
REFERENCE_SOURCE = "reference"
"""The strategy source that derives plans from reference solutions instead of an LLM."""
REFERENCE_SOURCES = {REFERENCE_SOURCE: False, "reference-givens": True}
"""Every reference-derived source, with its `givens_only` flag (`Strategy.from_reference`)."""
ROLLOUT_STRIDE = 10_000
"""Seed `s`'s teacher samples have rollout ids `s * ROLLOUT_STRIDE + sample`: each compile
seed draws (and caches) its own, so seeds vary stage 1 as well as training, and seed 0 keeps
the ids (and the cached calls) it always had."""
ACCEPT_RULES = ("executes", "parsed")
"""What stage 1 keeps: strategies the core executes (the acceptance filter), or every
strategy that parses (no filter: supervised distillation of the teacher)."""


@dataclass
class SamplingConfig:
    """Every knob of stage 1, with its default."""

    candidates: int = field(
        default=4, metadata={"help": "K strategies the teacher writes per example"}
    )
    temperature: float = field(default=0.8, metadata={"help": "teacher sampling temperature"})
    show_reference: bool = field(
        default=False,
        metadata={"help": "show the teacher the reference solution (leaks are still rejected)"},
    )
    keep: str = field(
        default="all",
        metadata={"help": "'all' accepted strategies or the 'cheapest' per example (core cost)"},
    )
    max_tokens: int = field(default=320, metadata={"help": "teacher completion budget"})
    constrained: bool = field(
        default=True,
        metadata={"help": "decode LLM teachers under the strategy's JSON schema"},
    )
    num_threads: int = field(default=16, metadata={"help": "concurrent candidates", "speed": True})
    accept: str = field(
        default="executes",
        metadata={"help": "'executes': valid, leak-free and the core succeeds (ExecTune); "
                  "'parsed': every strategy that parses and meets its constraints, no leak "
                  "or core check (the supervised baseline)"},
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.keep not in ("cheapest", "all"):
            raise ConfigError(f"keep={self.keep!r}: use 'cheapest' or 'all'")
        if self.accept not in ACCEPT_RULES:
            raise ConfigError(f"accept={self.accept!r}: use one of {', '.join(ACCEPT_RULES)}")
        if not 1 <= self.candidates <= ROLLOUT_STRIDE:
            raise ConfigError(f"candidates={self.candidates}: use 1 to {ROLLOUT_STRIDE}")


@dataclass
class Attempt:
    """One candidate strategy and what became of it."""

    example_id: str
    sample: int
    verdict: str
    source: str = ""
    reason: str = ""
    accepted: bool = False
    strategy: dict[str, Any] | None = None
    teacher_cost: float = 0.0
    core_cost: float = 0.0
    failed: str | None = None


@dataclass
class SamplingResult:
    attempts: list[Attempt]
    accepted: list[Attempt]

    @property
    def acceptance_rate(self) -> float:
        return sum(a.accepted for a in self.attempts) / max(len(self.attempts), 1)

    def summary(self) -> dict[str, Any]:
        reasons = Counter(
            "accepted"
            if a.accepted
            else ("core_failed" if a.verdict == Verdict.VALID else a.verdict)
            for a in self.attempts
        )
        return {
            "attempts": len(self.attempts),
            "accepted_attempts": sum(a.accepted for a in self.attempts),
            "acceptance_rate": self.acceptance_rate,
            "examples_with_accepted": len({a.example_id for a in self.accepted}),
            "kept": len(self.accepted),
            "outcomes": dict(reasons),
            "failed_calls": sum(a.failed is not None for a in self.attempts),
            "teacher_cost": sum(a.teacher_cost for a in self.attempts),
            "core_cost": sum(a.core_cost for a in self.attempts),
            "by_source": {
                source: {
                    "attempts": len(mine),
                    "accepted": sum(a.accepted for a in mine),
                    "acceptance_rate": sum(a.accepted for a in mine) / max(len(mine), 1),
                    "repaired": sum(a.verdict == Verdict.REPAIRED for a in mine),
                    "unparseable": sum(a.verdict == Verdict.UNPARSEABLE for a in mine),
                }
                for source in sorted({a.source for a in self.attempts})
                for mine in [[a for a in self.attempts if a.source == source]]
            },
        }


class Teacher(Guide):
    """A guide that may also read the reference solution (a hint it must not copy)."""

    def __init__(self, strategy_type: type[Strategy], lm, *, show_reference: bool, **kwargs):
        super().__init__(strategy_type, lm, **kwargs)
        self.show_reference = show_reference
        if show_reference:
            hint = dspy.InputField(
                desc="a worked solution, for your eyes only: plan the method, never copy its "
                "numbers or its final answer"
            )
            signature = self.predict.signature
            signature = signature.insert(len(signature.input_fields), REFERENCE_FIELD, hint, str)
            self.predict.signature = signature.with_instructions(
                f"{signature.instructions.strip()}\n\nYou are also shown a reference solution: "
                "plan its method, but never copy its numbers or its final answer."
            )


def sample_strategies(
    program: GCoP,
    trainset: list[dspy.Example],
    *,
    teacher: str | dspy.BaseLM | list[str | dspy.BaseLM],
    metric: Metric,
    config: SamplingConfig | None = None,
    seed: int = 0,
) -> SamplingResult:
    """Run stage 1 with every source in `teacher` (one, or a list; `"reference"` derives
    plans from reference solutions) and return every attempt plus the kept accepted ones.
    `seed` picks the teacher's samples (see `ROLLOUT_STRIDE`)."""
    config = config or SamplingConfig()
    strategy_type = program.guide.strategy_type
    sources = teacher if isinstance(teacher, list | tuple) else [teacher]

    def judge(example: dspy.Example, result: Attempt, strategy: Strategy) -> Attempt:
        if config.accept == "parsed":  # no filter: no leak check, no core call
            validity = strategy.check()
            result.verdict, result.reason = validity.verdict, validity.reason
            if validity.ok:
                result.strategy, result.accepted = strategy.model_dump(), True
            return result
        validity = strategy.check(example)
        result.verdict, result.reason = validity.verdict, validity.reason
        if not validity.ok:
            return result
        result.strategy = strategy.model_dump()
        try:
            outcome = program.execute(strategy, example)  # as deployment shows it
        except GcopError:
            raise
        except Exception as error:
            result.failed, result.verdict = str(error)[:300], "failed_call"
            return result
        result.core_cost = outcome.usage["cost"]
        result.accepted = metric(example, outcome) > 0
        return result

    def from_reference(source: str, example: dspy.Example, example_id: str) -> Attempt:
        result = Attempt(example_id, 0, "", source=source)
        strategy = strategy_type.from_reference(example, givens_only=REFERENCE_SOURCES[source])
        if strategy is None:
            result.verdict, result.reason = "no_reference", "no plan derivable from the solution"
            return result
        return judge(example, result, strategy)

    def from_teacher(
        writer: Teacher, source: str, example: dspy.Example, example_id: str, sample: int
    ) -> Attempt:
        inputs = dict(example.inputs())
        if config.show_reference:
            inputs[REFERENCE_FIELD] = str(example.get("solution") or example.get("reference") or "")
        try:
            options = {"temperature": config.temperature,
                       "rollout_id": seed * ROLLOUT_STRIDE + sample}  # fmt: skip
            plan = writer(**inputs, config=options)
        except Exception as error:  # a failed call: recorded, retried on the next run
            return Attempt(example_id, sample, "failed_call", source, failed=str(error)[:300])
        result = Attempt(example_id, sample, plan.validity.verdict, source, plan.validity.reason,
                         teacher_cost=plan.usage["cost"])  # fmt: skip
        if plan.strategy is None:
            return result
        return judge(example, result, plan.strategy)

    jobs = []
    for source in sources:
        if isinstance(source, str) and source in REFERENCE_SOURCES:
            jobs += [
                functools.partial(from_reference, source, example, example_key(example, i))
                for i, example in enumerate(trainset)
            ]
            continue
        name = source if isinstance(source, str) else source.model
        adapter = "plain" if config.constrained else program.guide.adapter_name
        writer = Teacher(strategy_type, source, show_reference=config.show_reference,
                         max_tokens=config.max_tokens, adapter=adapter,
                         constrained=config.constrained)  # fmt: skip
        jobs += [
            functools.partial(from_teacher, writer, name, example, example_key(example, i), j)
            for i, example in enumerate(trainset)
            for j in range(config.candidates)
        ]
    with ThreadPoolExecutor(max_workers=max(1, config.num_threads)) as pool:
        attempts = list(pool.map(progress_lines(len(jobs)), jobs))
    return SamplingResult(attempts, _keep(attempts, config.keep))


def progress_lines(total: int, lines: int = 10) -> Callable[[Callable[[], Attempt]], Attempt]:
    """A job runner that logs `sample: done/total judged, k accepted, s` about `lines` times
    over the stage (at each tenth by default, and at the end): stage 1 is minutes of core
    calls, and a log with nothing in it between `sample: started` and the stage's end
    looks stuck. Thread-safe: the pool's workers share it."""
    lock, started, every = threading.Lock(), time.perf_counter(), max(1, total // lines)
    counts = {"done": 0, "accepted": 0}

    def run(job: Callable[[], Attempt]) -> Attempt:
        attempt = job()
        with lock:
            counts["done"] += 1
            counts["accepted"] += attempt.accepted
            if counts["done"] % every == 0 or counts["done"] == total:
                log.info("sample: %d/%d judged, %d accepted, %.0f s", counts["done"], total,
                         counts["accepted"], time.perf_counter() - started)  # fmt: skip
        return attempt

    return run


def example_key(example: dspy.Example, position: int) -> str:
    """The name an `Attempt` gives its training problem: its `id`, else its position in the
    trainset. The one rule stage 1 writes and stages 2-3 and the AS demos read back by."""
    value = example.get("id")
    return str(position) if value is None else str(value)


def examples_by_key(trainset) -> dict[str, dspy.Example]:
    """The training problems by `example_key`: what an accepted strategy's problem is."""
    return {example_key(example, i): example for i, example in enumerate(trainset)}


def _keep(attempts: list[Attempt], keep: str) -> list[Attempt]:
    accepted = [a for a in attempts if a.accepted]
    if keep == "all":
        return accepted
    cheapest: dict[str, Attempt] = {}
    for a in accepted:
        if a.example_id not in cheapest or a.core_cost < cheapest[a.example_id].core_cost:
            cheapest[a.example_id] = a
    return list(cheapest.values())


def write_sampling(result: SamplingResult, config: SamplingConfig, directory: Path) -> None:
    """attempts.jsonl, accepted.jsonl, summary.json and config.json, each written atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "attempts.jsonl": "".join(json.dumps(asdict(a)) + "\n" for a in result.attempts),
        "accepted.jsonl": "".join(json.dumps(asdict(a)) + "\n" for a in result.accepted),
        "summary.json": json.dumps(result.summary(), indent=2),
        "config.json": json.dumps(asdict(config), indent=2),
    }
    for name, text in files.items():
        write_text(directory / name, text)

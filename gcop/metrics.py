"""Evaluation: accuracy, guide-averaged executability, cost and utility, with 95% intervals.

Executability is the probability that the core, following a strategy the guide wrote,
succeeds: a strategy counts only if it is valid (parses, meets its constraints and budget,
does not leak the answer) *and* the core then solves the example. With `samples=k` the
guide samples k strategies per example (temperature > 0, one rollout id each, so reruns
hit the cache and new sample indices are new samples); the estimate is the mean over
examples of the per-example executable fraction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import dspy

from gcop.errors import MetricError
from gcop.task import Metric

Z95 = 1.959964
UTILITY_LAMBDAS = (0.0, 1e3, 1e4)
"""lambda values (per dollar per query) at which reports give U = accuracy - lambda*cost."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95% interval."""

    estimate: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


def wilson(successes: float, n: int) -> Interval:
    """Wilson score interval of a proportion (well-behaved at 0, 1 and small n)."""
    if n == 0:
        return Interval(float("nan"), 0.0, 1.0)
    p = successes / n
    denom = 1 + Z95**2 / n
    center = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return Interval(p, low, high)


def mean_interval(values: Sequence[float]) -> Interval:
    """Mean with a normal-approximation interval (standard error over items)."""
    n = len(values)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    mean = sum(values) / n
    if n == 1:
        return Interval(mean, mean, mean)
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = Z95 * math.sqrt(var / n)
    return Interval(mean, mean - half, mean + half)


def proportion_interval(values: Sequence[float]) -> Interval:
    """Wilson for 0/1 outcomes, the mean interval (clipped to [0, 1]) for fractions."""
    if all(v in (0.0, 1.0) for v in values):
        return wilson(sum(values), len(values))
    m = mean_interval(values)
    return Interval(m.estimate, max(0.0, m.low), min(1.0, m.high))


@dataclass
class Outcome:
    """One example (or one sampled strategy of one example) run through a program."""

    example_id: str
    sample: int
    score: float
    valid: bool | None = None
    verdict: str | None = None
    reason: str = ""
    guide_tokens: int = 0
    core_tokens: int = 0
    cost: float = 0.0
    guide_cost: float = 0.0
    core_cost: float = 0.0
    """`cost` by role: what the guide's and the core's calls cost (their sum is `cost`)."""
    calls: int = 0
    cache_hits: int = 0
    guide_truncated: int = 0
    core_truncated: int = 0
    """Replies of each role cut at their `max_tokens` (a program or working that ran out of
    room: why chain of thought loses on code at the core's budget, docs/experiments.md)."""
    failed: str | None = None
    """The error of a call that failed (not a wrong answer: it was never answered)."""

    @property
    def executable(self) -> bool:
        return bool(self.valid) and self.score > 0


@dataclass
class Report:
    """Everything measured for one program on one set of examples."""

    system: str
    n: int
    samples: int
    accuracy: Interval
    executability: Interval | None
    valid_rate: Interval | None
    cost_per_query: Interval
    guide_tokens_per_query: float
    core_tokens_per_query: float
    calls: int
    cache_hits: int
    failed_calls: int
    guide_truncated: int = 0
    core_truncated: int = 0
    """Replies cut at `max_tokens`, per role, over every query."""
    outcomes: list[Outcome] = field(repr=False, default_factory=list)

    def utility(self, cost_weight: float) -> float:
        """accuracy - cost_weight * dollars per query."""
        return self.accuracy.estimate - cost_weight * self.cost_per_query.estimate

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcomes"] = [asdict(o) for o in self.outcomes]
        return data


def run_one(program: dspy.Module, example: dspy.Example, metric: Metric, *, example_id: str,
            sample: int = 0, config: dict[str, Any] | None = None) -> Outcome:  # fmt: skip
    """Run `program` on `example` and score it; a raised error is a failed call, not a crash."""
    kwargs = dict(example.inputs())
    if config is not None:
        kwargs["guide_config"] = config
    try:
        prediction = program(**kwargs)
    except Exception as error:  # recorded, never turned into a wrong answer
        return Outcome(example_id, sample, 0.0, failed=f"{type(error).__name__}: {error}"[:500])
    try:
        score = float(metric(example, prediction))
    except Exception as error:
        raise MetricError(
            f"the metric raised {type(error).__name__}: {error} on problem {example_id} "
            f"(prediction: {str(prediction.get('answer', prediction))[:200]!r}); fix the "
            "metric and rerun: every model call so far is cached, so none is repeated"
        ) from error
    guide, core = prediction.get("guide_usage") or {}, prediction.get("core_usage") or {}
    outcome = Outcome(
        example_id, sample, score,
        guide_tokens=guide.get("prompt_tokens", 0) + guide.get("completion_tokens", 0),
        core_tokens=core.get("prompt_tokens", 0) + core.get("completion_tokens", 0),
        cost=guide.get("cost", 0.0) + core.get("cost", 0.0),
        guide_cost=guide.get("cost", 0.0), core_cost=core.get("cost", 0.0),
        calls=guide.get("calls", 0) + core.get("calls", 0),
        cache_hits=guide.get("cache_hits", 0) + core.get("cache_hits", 0),
        guide_truncated=guide.get("truncated", 0), core_truncated=core.get("truncated", 0),
    )  # fmt: skip
    validity = prediction.get("validity")
    if validity is not None:
        if validity.ok and prediction.get("strategy") is not None:
            validity = prediction.strategy.check(example)  # now with the leak check
        outcome.valid, outcome.verdict, outcome.reason = (
            validity.ok,
            validity.verdict,
            validity.reason,
        )
    return outcome


def evaluate(
    program: dspy.Module,
    examples: Sequence[dspy.Example],
    metric: Metric,
    *,
    system: str = "",
    samples: int = 1,
    temperature: float = 0.7,
    num_threads: int = 16,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> Report:
    """Run `program` over `examples` (x `samples` guide samples) concurrently and report.

    With `samples=1` the guide decodes at its own settings; with more, each sample uses
    `temperature` and its own rollout id.
    """
    jobs = [
        (example, str(example.get("id", f"#{i}")), j,
         None if samples == 1 else {"temperature": temperature, "rollout_id": j})
        for i, example in enumerate(examples)
        for j in range(samples)
    ]  # fmt: skip

    def work(job) -> Outcome:
        example, example_id, sample, config = job
        outcome = run_one(program, example, metric, example_id=example_id, sample=sample,
                          config=config)  # fmt: skip
        if on_outcome:
            on_outcome(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
        outcomes = list(pool.map(work, jobs))
    return summarize(outcomes, system=system, samples=samples)


def summarize(outcomes: list[Outcome], *, system: str, samples: int) -> Report:
    """Aggregate outcomes; a call that failed (never answered) is counted as failed and left
    out of accuracy and executability, never scored as a wrong answer."""
    by_example: dict[str, list[Outcome]] = {}
    for o in outcomes:
        if o.failed is None:
            by_example.setdefault(o.example_id, []).append(o)
    groups = list(by_example.values())
    n = len(groups)
    accuracy = proportion_interval([_mean(o.score for o in g) for g in groups])
    guided = [o for g in groups for o in g if o.valid is not None]
    executability = valid_rate = None
    if guided:
        executability = proportion_interval([_mean(o.executable for o in g) for g in groups])
        valid_rate = proportion_interval([_mean(bool(o.valid) for o in g) for g in groups])
    per_query = max(len(outcomes), 1)
    return Report(
        system=system,
        n=n,
        samples=samples,
        accuracy=accuracy,
        executability=executability,
        valid_rate=valid_rate,
        cost_per_query=mean_interval([o.cost for o in outcomes]),
        guide_tokens_per_query=sum(o.guide_tokens for o in outcomes) / per_query,
        core_tokens_per_query=sum(o.core_tokens for o in outcomes) / per_query,
        calls=sum(o.calls for o in outcomes),
        cache_hits=sum(o.cache_hits for o in outcomes),
        failed_calls=sum(o.failed is not None for o in outcomes),
        guide_truncated=sum(o.guide_truncated for o in outcomes),
        core_truncated=sum(o.core_truncated for o in outcomes),
        outcomes=outcomes,
    )


def executability(
    program: dspy.Module,
    dataset: Sequence[dspy.Example],
    metric: Metric,
    *,
    samples: int = 4,
    temperature: float = 0.7,
    num_threads: int = 16,
) -> Interval:
    """Monte-Carlo guide-averaged executability of a GCoP program, with a 95% interval."""
    report = evaluate(program, dataset, metric, samples=samples, temperature=temperature,
                      num_threads=num_threads, system="executability")  # fmt: skip
    if report.executability is None:
        raise TypeError("executability needs a guided program (GCoP): this one has no guide")
    return report.executability


def utility(accuracy: float, cost_per_query: float, cost_weight: float) -> float:
    """End-to-end utility: accuracy minus `cost_weight` times dollars per query."""
    return accuracy - cost_weight * cost_per_query


def _mean(values) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values)

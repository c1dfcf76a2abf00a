"""DSPy's `BootstrapFewShot`, its teacher calls made ahead of it in concurrent batches.

DSPy bootstraps one training problem at a time (its own comment: "Can't yet use evaluate
because we need to trace *per example*"), so a local core that decodes 32 requests in one
batch serves one: on MATH-500 the 0.5B core's bootstrap compile took 17 minutes. DSPy has no
parallel bootstrap, so this part is ours. It changes when the calls are made, not which:
before DSPy reaches a problem it has not met, the teacher is called on that problem and the
next `lookahead - 1` together, with the very prompts DSPy's pass will send; the replies land
in gcop's call cache, and DSPy's own sequential pass (its loop, demo filtering, metric and
stopping rule, untouched) reads them back. It therefore keeps the demos DSPy keeps; what it
costs is up to `lookahead - 1` calls past the last problem DSPy needed.

The teacher's LM must go through a call cache (every `GcopLM` does), or each call is made
twice. Where it pays: a teacher that serves concurrent calls well (an API, a GPU server).
On a 2-core CPU with the ct2 engine it was slower than DSPy's own pass (docs/benchmarks.md):
ct2 splits a batch by prompt length, and the lookahead makes calls DSPy never reads, so
`gcop experiment`'s `bootstrap-fewshot` keeps DSPy's optimizer.
"""

from __future__ import annotations

import contextvars
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dspy

log = logging.getLogger(__name__)


class BatchedBootstrapFewShot(dspy.BootstrapFewShot):
    """`dspy.BootstrapFewShot` whose teacher calls go out `lookahead` at a time."""

    def __init__(self, *args: Any, lookahead: int = 32, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if lookahead < 1:
            raise ValueError(f"lookahead must be at least 1 (got {lookahead})")
        self.lookahead = lookahead
        self._warmed: set[int] = set()

    def compile(self, student: dspy.Module, *, teacher: dspy.Module | None = None,
                trainset: list[dspy.Example]) -> dspy.Module:  # fmt: skip
        self._warmed = set()  # ids of another compile's problems may be reused
        return super().compile(student, teacher=teacher, trainset=trainset)

    def _bootstrap_one_example(self, example: dspy.Example, round_idx: int = 0) -> bool:
        # Round 0 only: later rounds sample at temperature 1 with a rollout id of their own,
        # and run only for the few problems round 0 failed.
        if round_idx == 0 and self.lookahead > 1 and id(example) not in self._warmed:
            start = next(i for i, x in enumerate(self.trainset) if x is example)
            self._warm(self.trainset[start : start + self.lookahead])
        return super()._bootstrap_one_example(example, round_idx)

    def _warm(self, examples: list[dspy.Example]) -> None:
        """Call the teacher on `examples` concurrently, as DSPy's pass will, for the cache."""
        self._warmed.update(id(x) for x in examples)
        # DSPy hides a problem from the teacher's own demos while it is the question; a
        # problem that is one of those demos would need a teacher with other demos, so it is
        # left to DSPy's pass (at most `max_labeled_demos` problems).
        demos = [d for _, p in self.teacher.named_predictors() for d in p.demos]
        ready = [x for x in examples if not any(x == d for d in demos)]
        if not ready:
            return
        # Each job runs in a copy of this thread's context, so it sees the same
        # `dspy.context` (the core's adapter and LM) as DSPy's own pass.
        with ThreadPoolExecutor(max_workers=len(ready)) as pool:
            jobs = [pool.submit(contextvars.copy_context().run, self._ask_teacher, x)
                    for x in ready]  # fmt: skip
            for job in jobs:
                job.result()

    def _ask_teacher(self, example: dspy.Example) -> None:
        try:
            with dspy.context(trace=[], **self.teacher_settings):
                self.teacher(**example.inputs())
        except Exception as error:  # DSPy's pass makes this call again and counts the error
            log.debug("warming the teacher's call on %s failed: %s", example, error)

"""`BatchedBootstrapFewShot`: DSPy's demos, with the teacher's calls made in batches."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dspy
import pytest

from gcop.calls import CallCache, set_default_cache
from gcop.optimizers.bootstrap import BatchedBootstrapFewShot
from gcop.program import Core, CoreOnly
from gcop.programs.math import MathPlan, gsm8k_metric
from tests.test_exectune import _identity
from tests.test_program import examples, lm


def trainset() -> list[dspy.Example]:
    """Twelve problems the scripted core gets wrong alone ("trick"), except four: DSPy must
    read past eight failures to find its two demos, and stops before the last two."""
    tricks, plain = examples(12, trick=True), examples(12)
    return [plain[i] if i in (3, 7, 9, 11) else tricks[i] for i in range(12)]


def compile_demos(api, optimizer_class, cache_dir: Path, **options) -> list[list[dict]]:
    """Compile the core alone with a fresh call cache; every predictor's demos."""
    set_default_cache(CallCache(cache_dir))
    api.model.max_in_flight = 0
    student = CoreOnly(Core(lm(api), task=MathPlan.task))
    optimizer = optimizer_class(metric=gsm8k_metric, max_bootstrapped_demos=2,
                                max_labeled_demos=3, **options)  # fmt: skip
    with dspy.context(lm=student.core.lm, adapter=student.core.adapter):
        compiled = optimizer.compile(student, trainset=trainset())
    return [[dict(d) for d in p.demos] for _, p in compiled.named_predictors()]


def test_batched_bootstrap_keeps_dspy_s_demos_and_calls_the_teacher_together(
    api, tmp_path: Path
) -> None:
    api.model.delay = 0.2  # calls in flight together overlap on the server
    try:
        dspy_demos = compile_demos(api, dspy.BootstrapFewShot, tmp_path / "sequential")
        assert api.model.max_in_flight == 1
        sequential = Counter(_identity(b) for b in api.model.bodies)
        api.model.bodies.clear()

        batched = compile_demos(api, BatchedBootstrapFewShot, tmp_path / "batched",
                                lookahead=3)  # fmt: skip
    finally:
        set_default_cache(None)
    bootstrapped = [d for demos in batched for d in demos if d.get("augmented")]
    assert len(bootstrapped) == 2 and batched == dspy_demos
    assert api.model.max_in_flight > 1
    asked = Counter(_identity(b) for b in api.model.bodies)
    assert max(asked.values()) == 1  # DSPy's own pass read every warmed reply back
    assert set(sequential) <= set(asked)  # every prompt DSPy sends, the same text
    # DSPy stopped at problem 8 (its second demo); a batch goes at most 2 problems past it
    assert len(asked) - len(sequential) <= 2


def test_a_lookahead_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="lookahead must be at least 1"):
        BatchedBootstrapFewShot(metric=gsm8k_metric, lookahead=0)

"""Core faults through the real LiteLLM HTTP path: retried, counted, never a wrong score."""

from __future__ import annotations

import pytest

from gcop.errors import MetricError
from gcop.metrics import evaluate
from gcop.optimizers.sampling import SamplingConfig, sample_strategies
from gcop.program import Core, CoreOnly, GCoP, Guide
from gcop.programs.math import MathPlan, gsm8k_metric
from tests.test_program import examples, lm


def flaky_lm(api):
    return lm(api, num_retries=4, timeout=1.0)


def test_transient_faults_are_retried_and_every_example_scored(api, fresh_cache) -> None:
    api.model.slow_seconds = 2.5  # past the 1 s timeout
    api.model.faults = ["429", "500", "slow", "truncated", "500", "429"]
    core = Core(flaky_lm(api), task=MathPlan.task)
    report = evaluate(CoreOnly(core), examples(4), gsm8k_metric, num_threads=1)
    assert report.failed_calls == 0 and report.n == 4
    assert report.accuracy.estimate == 1.0  # every example scored, correctly
    assert len(fresh_cache) == 4  # only answers are cached, no fault
    assert fresh_cache.ledger.as_dict()["openai/gpt-4o-mini"]["failed_calls"] == 0


def test_a_call_that_finally_fails_is_failed_not_wrong_and_is_retried_next_run(
    api, fresh_cache
) -> None:
    api.model.faults = ["500"] * 5  # more than num_retries + 1 attempts for the first call
    core = Core(lm(api, num_retries=2), task=MathPlan.task)
    first = evaluate(CoreOnly(core), examples(3), gsm8k_metric, num_threads=1)
    assert first.failed_calls == 1 and first.n == 2
    assert first.accuracy.estimate == 1.0  # the failure is not counted as a wrong answer
    assert len(fresh_cache) == 2
    assert fresh_cache.ledger.as_dict()["openai/gpt-4o-mini"]["failed_calls"] == 1
    served = api.model.requests
    second = evaluate(CoreOnly(core), examples(3), gsm8k_metric, num_threads=1)
    assert second.failed_calls == 0 and second.n == 3
    assert api.model.requests == served + 1  # only the failed call was made again


def test_a_metric_that_raises_stops_with_the_problem_named_and_repeats_no_call(
    api, fresh_cache
) -> None:
    def fragile(example, prediction) -> float:
        if example.question.startswith("What is 3"):
            raise OverflowError("int too large to convert to float")
        return gsm8k_metric(example, prediction)

    core = CoreOnly(Core(lm(api), task=MathPlan.task))
    problems = examples(3)
    with pytest.raises(MetricError, match=r"OverflowError: int too large .* on problem 3 "
                       r"\(prediction: '\d+'\); fix the metric"):  # fmt: skip
        evaluate(core, problems, fragile, num_threads=1)
    served = api.model.requests
    assert evaluate(core, problems, gsm8k_metric, num_threads=1).accuracy.estimate == 1.0
    assert api.model.requests == served  # the fixed metric rescored cached replies


def test_malformed_core_output_is_a_scored_failure(api, fresh_cache) -> None:
    api.model.faults = ["garbage"]
    core = Core(lm(api), task=MathPlan.task)
    report = evaluate(CoreOnly(core), examples(1), gsm8k_metric, num_threads=1)
    assert report.failed_calls == 0 and report.n == 1
    assert report.accuracy.estimate == 0.0  # answered, wrongly: that is a score


def test_stage_one_survives_faults(api, fresh_cache) -> None:
    api.model.faults = ["429", "truncated", "500", "500"]
    program = GCoP(Guide(MathPlan, flaky_lm(api)), Core(flaky_lm(api)))
    result = sample_strategies(
        program, examples(3, trick=True), teacher=flaky_lm(api), metric=gsm8k_metric,
        config=SamplingConfig(candidates=2, num_threads=2),
    )  # fmt: skip
    assert result.acceptance_rate == 1.0
    assert result.summary()["failed_calls"] == 0


def test_gcop_evaluation_survives_faults(api, fresh_cache) -> None:
    api.model.slow_seconds = 2.5
    api.model.faults = ["500", "429", "slow", "truncated", "429", "500", "truncated"]
    program = GCoP(Guide(MathPlan, flaky_lm(api)), Core(flaky_lm(api)))
    report = evaluate(program, examples(3, trick=True), gsm8k_metric, num_threads=2)
    assert report.failed_calls == 0 and report.n == 3
    assert report.accuracy.estimate == 1.0 and report.executability.estimate == 1.0
    assert len(fresh_cache) == 6  # one guide and one core answer per example, no fault


def test_requests_in_flight_respect_the_concurrency_limit(api, fresh_cache) -> None:
    api.model.delay = 0.2
    core = Core(lm(api, max_concurrency=2), task=MathPlan.task)
    report = evaluate(CoreOnly(core), examples(8), gsm8k_metric, num_threads=8)
    assert report.n == 8 and api.model.max_in_flight == 2

"""ExecTune stage 1: acceptance sampling against a loopback API, with the real adapters."""

from __future__ import annotations

import json
from pathlib import Path

from gcop.optimizers.sampling import SamplingConfig, sample_strategies, write_sampling
from gcop.program import Core, GCoP, Guide
from gcop.programs.math import MathPlan, gsm8k_metric
from tests.test_program import examples, is_guide_prompt, lm


def test_valid_helpful_strategies_are_accepted_and_leaks_rejected(
    api, fresh_cache, tmp_path: Path
) -> None:
    program = GCoP(Guide(MathPlan, lm(api)), Core(lm(api)))
    trainset = examples(3, trick=True)  # the core needs the plan to get these right
    config = SamplingConfig(candidates=2, show_reference=True, num_threads=4)
    result = sample_strategies(program, trainset, teacher=lm(api), metric=gsm8k_metric,
                               config=config)  # fmt: skip
    assert result.acceptance_rate == 1.0
    assert len(result.accepted) == 3  # the cheapest per example
    teacher_prompts = [b for b in api.model.bodies if is_guide_prompt(b)]
    assert "reference_solution" in teacher_prompts[0]["messages"][0]["content"]
    write_sampling(result, config, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["outcomes"] == {"accepted": 6} and summary["core_cost"] > 0

    api.model.plan = "leaky"  # new questions (not cached): the teacher now gives answers away
    leaky = sample_strategies(program, examples(2), teacher=lm(api), metric=gsm8k_metric,
                              config=config)  # fmt: skip
    assert leaky.acceptance_rate == 0.0 and not leaky.accepted
    assert {a.verdict for a in leaky.attempts} == {"leak"}


def test_rerun_makes_no_new_calls(api, fresh_cache) -> None:
    program = GCoP(Guide(MathPlan, lm(api)), Core(lm(api)))
    config = SamplingConfig(candidates=2, num_threads=2)
    run = lambda: sample_strategies(  # noqa: E731
        program, examples(2), teacher=lm(api), metric=gsm8k_metric, config=config
    )
    first = run()
    served = api.model.requests
    second = run()
    assert api.model.requests == served
    assert first.summary() == second.summary()


def test_training_example_is_the_inference_prompt_plus_the_strategy(api) -> None:
    guide = Guide(MathPlan, lm(api))
    plan = MathPlan(steps=["Read the numbers.", "Add them."])
    data = guide.format_training_example(plan, question="What is 1 plus 2?")
    assert data["messages"][:-1] == guide.format_prompt(question="What is 1 plus 2?")
    assert data["messages"][-1]["role"] == "assistant"
    assert (
        MathPlan.model_validate_json(
            data["messages"][-1]["content"].split("]]\n", 1)[1].split("\n\n[[")[0]
        )
        == plan
    )

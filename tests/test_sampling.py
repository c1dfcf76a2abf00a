"""ExecTune stage 1: acceptance sampling against a loopback API, with the real adapters."""

from __future__ import annotations

import json
from pathlib import Path

import dspy

from gcop.optimizers.sampling import SamplingConfig, sample_strategies, write_sampling
from gcop.program import Core, GCoP, Guide
from gcop.programs.math import MathPlan, gsm8k_metric
from tests.test_program import examples, is_guide_prompt, lm


def test_valid_helpful_strategies_are_accepted_and_leaks_rejected(
    api, fresh_cache, tmp_path: Path
) -> None:
    program = GCoP(Guide(MathPlan, lm(api)), Core(lm(api)))
    trainset = examples(3, trick=True)  # the core needs the plan to get these right
    config = SamplingConfig(candidates=2, show_reference=True, num_threads=4, keep="cheapest")
    result = sample_strategies(program, trainset, teacher=lm(api), metric=gsm8k_metric,
                               config=config)  # fmt: skip
    assert result.acceptance_rate == 1.0
    assert len(result.accepted) == 3  # the cheapest per example
    teacher_prompts = [b for b in api.model.bodies if is_guide_prompt(b)]
    assert "reference solution" in teacher_prompts[0]["messages"][0]["content"]
    write_sampling(result, config, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["outcomes"] == {"accepted": 6} and summary["core_cost"] > 0

    api.model.plan = "leaky"  # new questions (not cached): the teacher now gives answers away
    leaky = sample_strategies(program, examples(2), teacher=lm(api), metric=gsm8k_metric,
                              config=config)  # fmt: skip
    assert leaky.acceptance_rate == 0.0 and not leaky.accepted
    assert {a.verdict for a in leaky.attempts} == {"leak"}


def test_reference_source_derives_plans_that_go_through_the_same_filter(api, fresh_cache) -> None:
    program = GCoP(Guide(MathPlan, lm(api)), Core(lm(api)))
    solved = [
        dspy.Example(id="a", question="trick What is 2 plus 20?", answer="22",
                     solution="She has 2 + 20 = <<2+20=22>>22 apples.\n#### 22"),
        dspy.Example(id="b", question="trick What is 3 plus 30?", answer="33",
                     solution="A trick: add 3 + 30 = <<3+30=33>>33.\n#### 33"),  # misleads
        dspy.Example(id="c", question="trick What is 4 plus 40?", answer="44",
                     solution="The sum is 44.\n#### 44"),  # its only line is the answer
    ]  # fmt: skip
    trainset = [e.with_inputs("question") for e in solved]
    config = SamplingConfig(candidates=2, num_threads=4)
    result = sample_strategies(program, trainset, teacher=["reference", lm(api)],
                               metric=gsm8k_metric, config=config)  # fmt: skip
    by_source = result.summary()["by_source"]
    assert by_source["reference"] == {"attempts": 3, "accepted": 1, "acceptance_rate": 1 / 3,
                                      "repaired": 0, "unparseable": 0}  # fmt: skip
    assert by_source["openai/gpt-4o-mini"]["accepted"] == 6  # K=2 per example, all kept
    reference = {a.example_id: a for a in result.attempts if a.source == "reference"}
    assert reference["a"].accepted and reference["a"].strategy == {
        "steps": ["She has 2 + 20 apples."]
    }
    assert reference["b"].verdict == "valid" and not reference["b"].accepted  # the core failed
    assert reference["c"].verdict == "no_reference"  # nothing left once the answer is out
    assert len(result.accepted) == 7


def test_reference_givens_source_hides_unstated_values(api, fresh_cache) -> None:
    program = GCoP(Guide(MathPlan, lm(api)), Core(lm(api)))
    example = dspy.Example(
        id="a", question="trick Ann has 2 bags of 20 apples and eats 5. How many are left?",
        answer="35", solution="She has 2*20 = <<2*20=40>>40 apples.\n"
        "She has 40-5 = <<40-5=35>>35 left.\n#### 35",
    ).with_inputs("question")  # fmt: skip
    sources = ["reference", "reference-givens"]
    result = sample_strategies(program, [example], teacher=sources, metric=gsm8k_metric,
                               config=SamplingConfig(num_threads=2))  # fmt: skip
    plans = {a.source: a.strategy["steps"] for a in result.attempts}
    assert plans == {
        "reference": ["She has 2*20 apples.", "She has 40-5 left."],
        "reference-givens": ["She has 2*20 apples.", "She has that amount-5 left."],
    }
    assert set(result.summary()["by_source"]) == {"reference", "reference-givens"}


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


def test_each_seed_draws_its_own_teacher_samples(api, fresh_cache) -> None:
    """Seeds used to share stage 1 whenever the call cache outlived a run (the rollout id
    was the sample index alone), so a grid's seeds varied training only."""
    program = GCoP(Guide(MathPlan, lm(api)), Core(lm(api)))
    config = SamplingConfig(candidates=2, num_threads=2)
    run = lambda seed: sample_strategies(  # noqa: E731
        program, examples(2), teacher=lm(api), metric=gsm8k_metric, config=config, seed=seed
    )
    run(0)
    served = len(api.model.bodies)
    run(1)  # 2 problems x 2 candidates, drawn anew; the core's greedy calls are cached
    assert len(api.model.bodies) == served + 4
    assert all(is_guide_prompt(body) for body in api.model.bodies[served:])
    run(0)
    run(1)
    assert len(api.model.bodies) == served + 4  # each seed's samples are cached apart


def test_training_example_is_the_inference_prompt_plus_the_strategy(api) -> None:
    guide = Guide(MathPlan, lm(api))
    plan = MathPlan(steps=["Read the numbers.", "Add them."])
    data = guide.format_training_example(plan, question="What is 1 plus 2?")
    assert data["messages"][:-1] == guide.format_prompt(question="What is 1 plus 2?")
    assert data["messages"][-1]["role"] == "assistant"
    assert data["messages"][-1]["content"] == "1. Read the numbers.\n2. Add them."
    assert guide.read(data["messages"][-1]["content"]) == plan


def test_a_trainset_without_ids_names_problems_by_position_for_every_stage(
    api, fresh_cache
) -> None:
    """Stage 1 names each attempt's problem; stage 2 must find that problem again by name."""
    from gcop.optimizers.exectune import sft_examples

    program = GCoP(Guide(MathPlan, lm(api)), Core(lm(api)))
    trainset = [
        dspy.Example(question=f"trick What is {n} plus {10 * n}?", answer=str(11 * n),
                     solution=f"Add {n} + {10 * n} = <<{n}+{10 * n}={11 * n}>>{11 * n} apples."
                     f"\n#### {11 * n}").with_inputs("question")
        for n in (2, 4)
    ]  # fmt: skip
    result = sample_strategies(program, trainset, teacher="reference", metric=gsm8k_metric,
                               config=SamplingConfig(num_threads=2))  # fmt: skip
    assert sorted(a.example_id for a in result.accepted) == ["0", "1"]
    rows = sft_examples(program.guide, trainset, result.accepted)
    for attempt, row in zip(result.accepted, rows, strict=True):
        question = trainset[int(attempt.example_id)].question
        assert question in json.dumps(row)

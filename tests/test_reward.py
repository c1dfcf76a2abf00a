"""The RL reward ranks hand-made strategies: helpful > neutral > invalid > harmful > leaking."""

from __future__ import annotations

import dspy
import pytest

from gcop.optimizers.reward import ExecutabilityReward, RewardWeights, zero_spread_fraction
from gcop.program import Core, GCoP, Guide
from gcop.programs.math import MathPlan, gsm8k_metric
from tests.test_program import lm


def completion(steps: list[str]) -> list[dict]:
    content = "\n".join(f"{i}. {step}" for i, step in enumerate(steps, 1))
    return [{"role": "assistant", "content": content}]


def test_reward_orders_strategies(api, fresh_cache) -> None:
    examples = [
        # the loopback core gets "trick" questions wrong alone and right with any plan
        dspy.Example(question="trick What is 2 plus 3?", answer="5").with_inputs("question"),
        dspy.Example(question="What is 2 plus 3?", answer="5").with_inputs("question"),
        dspy.Example(question="What is 4 plus 3?", answer="7").with_inputs("question"),
    ]
    program = GCoP(Guide(MathPlan, lm(api)), Core(lm(api)))
    reward = ExecutabilityReward(program, examples, gsm8k_metric, RewardWeights(cost_weight=0))
    good = completion(["Read the two numbers.", "Add them together."])
    leaky = completion(["Read the two numbers.", "Add them to get 5."])
    invalid = [{"role": "assistant", "content": "just add them"}]
    rewards = reward(
        prompts=[None] * 4,
        completions=[good, good, invalid, leaky],
        example_index=[0, 1, 1, 1],
    )
    helpful, neutral, bad, leaking = rewards
    assert helpful > neutral > bad > leaking
    assert reward.history[-1]["valid"] == 0.5 and reward.history[-1]["leak"] == 0.25

    # a harmful plan: the core alone gets 4 + 3 right; a plan calling it a trick breaks it
    harmful = completion(["This is a trick question.", "Add them together."])
    harm = reward(prompts=[None], completions=[harmful], example_index=[2])[0]
    assert bad > harm > leaking
    assert reward.history[-1]["harm"] == 1.0


def test_core_alone_is_run_once_per_example(api, fresh_cache) -> None:
    examples = [dspy.Example(question="What is 1 plus 1?", answer="2").with_inputs("question")]
    program = GCoP(Guide(MathPlan, lm(api)), Core(lm(api)))
    reward = ExecutabilityReward(program, examples, gsm8k_metric)
    good = completion(["Read the two numbers.", "Add them together."])
    reward(prompts=[None] * 3, completions=[good] * 3, example_index=[0, 0, 0])
    served = api.model.requests
    assert served == 2  # one guided core call (then cached), one core-alone call
    reward(prompts=[None] * 3, completions=[good] * 3, example_index=[0, 0, 0])
    assert api.model.requests == served


def test_cost_is_charged_on_every_branch_at_api_prices(api, fresh_cache) -> None:
    """At a Haiku-like guide price the order still holds: cost is relative to the core alone,
    so a valid, correct plan never ranks below an unparseable one."""
    examples = [
        dspy.Example(question="trick What is 2 plus 3?", answer="5").with_inputs("question")
    ]
    program = GCoP(Guide(MathPlan, lm(api)), Core(lm(api)))
    haiku = (0.8e-6, 4.0e-6)  # dollars per input / output token
    reward = ExecutabilityReward(program, examples, gsm8k_metric, guide_price=haiku)
    good = completion(["Read the two numbers.", "Add them together."])
    repaired = [{"role": "assistant", "content": '```json\n{"steps": ["Read them.", "Add."]}\n```'}]
    prose = [{"role": "assistant", "content": "just add them"}]
    leaky = completion(["Read the two numbers.", "Add them to get 5."])
    prompt = [{"role": "user", "content": "x" * 400}]
    rewards = reward(prompts=[prompt] * 4, completions=[good, repaired, prose, leaky],
                     example_index=[0, 0, 0, 0], completion_ids=[[1] * 20] * 4)  # fmt: skip
    assert rewards[0] > rewards[1] > rewards[2] > rewards[3]
    parts = [reward.score(c[0]["content"], 0, reward.guide_cost(prompt, "", [1] * 20))
             for c in (good, prose)]  # fmt: skip
    guide_dollars = 0.8e-6 * 100 + 4.0e-6 * 20
    _, alone_cost = reward.core_alone(0)
    assert parts[1].cost == pytest.approx(guide_dollars / alone_cost)  # unparseable pays too
    assert parts[0].cost > parts[1].cost > 0  # the guided call costs more than the fallback


def test_graded_format_credit_gives_groups_a_spread(api, fresh_cache) -> None:
    examples = [dspy.Example(question="What is 2 plus 3?", answer="5").with_inputs("question")]
    program = GCoP(Guide(MathPlan, lm(api)), Core(lm(api)))
    reward = ExecutabilityReward(program, examples, gsm8k_metric, RewardWeights(cost_weight=0))
    bullets = [{"role": "assistant", "content": "Plan:\n- Read them.\n- Add them."}]
    prose = [{"role": "assistant", "content": "just add them"}]
    rewards = reward(prompts=[None] * 2, completions=[bullets, prose], example_index=[0, 0])
    assert rewards[0] > rewards[1] == 0.0
    assert reward.history[-1]["zero_spread_groups"] == 0.0
    reward(prompts=[None] * 2, completions=[prose, prose], example_index=[0, 0])
    assert reward.history[-1]["zero_spread_groups"] == 1.0


def test_zero_spread_fraction_by_hand() -> None:
    # groups: 0 -> [1, 1] (flat), 1 -> [0, 1] (spread), 2 -> [0.5] (a single sample: not counted)
    assert zero_spread_fraction([0, 0, 1, 1, 2], [1.0, 1.0, 0.0, 1.0, 0.5]) == 0.5


def test_the_core_reads_the_plan_as_deployment_shows_it(api, fresh_cache) -> None:
    """With `hide_computed_values`, the reward's core call gets the plan without the values
    the guide computed, as `GCoP.forward` gives it, not the guide's raw text."""
    example = dspy.Example(question="What is 2 plus 3?", answer="5").with_inputs("question")
    program = GCoP(Guide(MathPlan, lm(api)), Core(lm(api)), hide_computed_values=True)
    reward = ExecutabilityReward(program, [example], gsm8k_metric)
    cases = (
        (reward.score, "It is 4 plus 1.", "It is that amount plus that amount."),
        (reward.task_reward, "It is 6 less 1.", "It is that amount less that amount."),
    )
    for read, written, shown in cases:
        read(completion(["Add 2 and 3.", written])[0]["content"], 0)
        core_request = api.model.bodies[-1]["messages"][-1]["content"]
        assert f"1. Add 2 and 3.\n2. {shown}" in core_request

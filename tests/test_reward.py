"""The RL reward ranks hand-made strategies: helpful > neutral > invalid > harmful > leaking."""

from __future__ import annotations

import json

import dspy

from gcop.optimizers.reward import ExecutabilityReward, RewardWeights
from gcop.program import Core, GCoP, Guide
from gcop.programs.math import MathPlan, gsm8k_metric
from tests.test_program import lm


def completion(steps: list[str]) -> list[dict]:
    content = f"[[ ## strategy ## ]]\n{json.dumps({'steps': steps})}\n\n[[ ## completed ## ]]"
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
    assert reward.history[-1]["valid"] == 0.75 and reward.history[-1]["leak"] == 0.25

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

"""A task defined outside gcop, registered the way a user's file or plugin package does:
`register_task(...)` at import. Loaded in-process by the tests, and by `gcop` itself through
`GCOP_PLUGINS=tests.plugin_task`."""

from __future__ import annotations

import dspy

from gcop import Task, register_task
from gcop.programs.math import MathPlan, gsm8k_metric
from tests.test_program import examples

NAME = "tiny-sums"

TASK = register_task(
    Task(
        name=NAME,
        strategy_type=MathPlan,
        metric=gsm8k_metric,
        load_split=lambda part: examples(4, trick=part == "train"),
        guide_max_tokens=16,
        core_max_tokens=48,
        description="four 'What is a plus b?' questions (a test task)",
        core_demo=lambda e: dspy.Example(
            question=e.question, reasoning="Add the two numbers.", answer=e.answer
        ).with_inputs("question"),
    )
)

"""Bad input gets one clear error naming the problem and the fix, before any call."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import dspy
import pytest

from gcop.checks import MAX_INPUT_CHARS, BadInputError, check_credentials, check_examples
from gcop.lm import GcopLM
from gcop.program import Guide
from gcop.programs.math import MathPlan
from gcop.strategy import Strategy


def ex(question, **extra) -> dspy.Example:
    return dspy.Example(question=question, **extra).with_inputs("question")


@pytest.mark.parametrize(
    ("examples", "message"),
    [
        ([], "is empty"),
        ([{"question": "x"}], "is a dict, not a dspy.Example"),
        ([dspy.Example(q="x").with_inputs("q")], "lacks the input field(s) ['question']"),
        ([ex(42)], "trainset[0].question is a int; inputs must be text"),
        ([ex("a"), ex("b"), ex("a")], "trainset[2] repeats the inputs of trainset[0]"),
        ([ex("x" * (MAX_INPUT_CHARS + 1))], "characters (limit"),
    ],
)
def test_bad_trainsets(examples, message: str) -> None:
    with pytest.raises(BadInputError) as error:
        check_examples(examples, ["question"])
    assert message in str(error.value)


def test_strategy_types_that_cannot_be_used(api) -> None:
    class NoTask(Strategy):
        steps: list[str]

    class Unrenderable(Strategy):
        task: ClassVar[type[dspy.Signature]] = MathPlan.task
        check: Callable[[int], int]  # a function has no JSON form

    model = GcopLM("openai/gpt-4o-mini", api_base=api.base_url, api_key="sk-x")
    with pytest.raises(BadInputError, match="has no task signature"):
        Guide(NoTask, model)
    with pytest.raises(BadInputError, match="cannot be rendered as a JSON schema"):
        Guide(Unrenderable, model)
    with pytest.raises(BadInputError, match="not a subclass of gcop.Strategy"):
        Guide(dict, model)


def test_missing_api_key_is_named(monkeypatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(BadInputError, match="needs ANTHROPIC_API_KEY: set it"):
        check_credentials(GcopLM("anthropic/claude-3-5-haiku-latest"))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-x")
    check_credentials(GcopLM("anthropic/claude-3-5-haiku-latest"))
    check_credentials(GcopLM("openai/gpt-4o-mini", api_key="sk-given"))

"""GcopLM on DSPy's current LM interface: a custom engine, no deprecated `forward`."""

from __future__ import annotations

import warnings

import dspy
import pytest

from gcop.calls import SpendLimit
from gcop.errors import BudgetExceededError
from gcop.lm import CachedLiteLLMEngine, GcopLM
from gcop.program import Core
from gcop.programs.math import SolveMath
from tests.test_program import lm


def test_gcop_lm_is_a_dspy_lm_with_an_engine_and_no_forward_override() -> None:
    assert issubclass(GcopLM, dspy.LM)
    assert "forward" not in vars(GcopLM) and "aforward" not in vars(GcopLM)
    model = GcopLM("openai/gpt-4o-mini", api_key="sk-test-not-a-secret")
    assert isinstance(model.engine, CachedLiteLLMEngine)
    assert "api_key" not in model.kwargs and "api_key" not in model.dump_state()


def test_calls_raise_no_deprecation_warning(api, fresh_cache) -> None:
    core = Core(lm(api), task=SolveMath)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert core(question="What is 2 plus 3?").answer == "5"
        assert lm(api)("hello") and lm(api)("hello", temperature=0.5, rollout_id=1)
    assert api.model.requests == 3


def test_the_sample_index_reaches_the_cache_key(api, fresh_cache) -> None:
    sampled = lm(api, temperature=0.7)
    for rollout in (1, 2, 1, 2):
        sampled("hello", rollout_id=rollout)
    assert api.model.requests == 2 and len(fresh_cache) == 2


def test_gcop_errors_from_the_engine_are_raised_as_they_are(api, fresh_cache) -> None:
    fresh_cache.spend_limit = SpendLimit(dollars=0.0)
    with pytest.raises(BudgetExceededError, match="spending budget reached"):
        lm(api)("hello")  # not DSPy's LMError wrapping it: callers catch gcop's own errors
    assert api.model.requests == 0

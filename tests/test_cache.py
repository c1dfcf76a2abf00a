"""The call cache and cost ledger: reruns are free, costs are stable, secrets stay out."""

from __future__ import annotations

from pathlib import Path

import pytest

from gcop.calls import CallCache, call_key
from gcop.metrics import evaluate
from gcop.programs.math import gsm8k_metric
from tests.test_program import examples, lm, program


def test_second_identical_run_makes_zero_model_calls_and_reports_same_cost(
    api, fresh_cache
) -> None:
    first = evaluate(program(api), examples(4), gsm8k_metric, num_threads=4)
    served = api.model.requests
    assert served == 8 and first.cache_hits == 0
    second = evaluate(program(api), examples(4), gsm8k_metric, num_threads=4)
    assert api.model.requests == served  # nothing reached the model
    assert second.cache_hits == second.calls == 8
    assert second.cost_per_query == first.cost_per_query
    assert second.accuracy == first.accuracy
    totals = fresh_cache.ledger.as_dict()["openai/gpt-4o-mini"]
    assert totals["cache_hits"] == 8
    # the same 8 costs, summed in whatever order the threads finished
    assert totals["cost_saved"] == pytest.approx(totals["cost_spent"], rel=1e-12)
    assert totals["cost_spent"] > 0
    assert fresh_cache.ledger.model_calls() == 8


def test_sample_index_separates_samples_and_reruns_reuse_them(api, fresh_cache) -> None:
    guide_lm = lm(api, temperature=0.9)
    for rollout in (0, 1, 0, 1):
        guide_lm("hello", rollout_id=rollout)
    assert api.model.requests == 2
    greedy = lm(api)
    greedy("hello", rollout_id=5)
    greedy("hello", rollout_id=6)  # greedy: the sample index does not matter
    assert api.model.requests == 3


def test_api_keys_never_reach_the_cache(api, tmp_path: Path) -> None:
    cache = CallCache(tmp_path / "calls")
    secret = "sk-live-SECRET-4242"
    model = lm(api, cache=cache)
    model.client["api_key"] = secret  # client options live with the engine, not in kwargs
    model("What is 1 plus 2?")
    assert api.model.bodies[-1]["headers"]["authorization"] == f"Bearer {secret}"
    cache.store.close()
    for path in (tmp_path / "calls").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert call_key("m", [], {"api_key": "a"}, None) == call_key("m", [], {"api_key": "b"}, None)


def test_failed_calls_are_counted_and_not_cached(tmp_path: Path) -> None:
    cache = CallCache(tmp_path / "calls")

    def broken():
        raise ConnectionError("server went away")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            cache.call("m/x", [], {}, rollout_id=None, compute=broken)
    assert len(cache) == 0
    assert cache.ledger.as_dict()["m/x"]["failed_calls"] == 2
    response, record = cache.call(
        "m/x", [], {}, rollout_id=None,
        compute=lambda: ({"usage": {"prompt_tokens": 3, "completion_tokens": 2}}, 0.5),
    )  # fmt: skip
    assert not record.cached and record.cost == 0.5 and len(cache) == 1


def test_spend_limit_stops_cleanly_and_a_rerun_resumes(api, fresh_cache) -> None:
    from gcop.calls import SpendLimit
    from gcop.errors import BudgetExceededError

    model = lm(api)
    model("What is 1 plus 2?")
    fresh_cache.spend_limit = SpendLimit(tokens=1)
    with pytest.raises(BudgetExceededError, match="rerunning with a larger budget resumes"):
        model("What is 2 plus 2?")
    model("What is 1 plus 2?")  # cached calls stay free under the limit
    fresh_cache.spend_limit = SpendLimit(tokens=10_000)
    model("What is 2 plus 2?")
    assert api.model.requests == 2

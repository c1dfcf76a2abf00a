"""Guide, Core, GCoP and CoreOnly through real DSPy adapters and LiteLLM's HTTP path."""

from __future__ import annotations

import warnings

import dspy
import pytest

from gcop.adapters import PlainAdapter
from gcop.lm import GcopLM
from gcop.metrics import evaluate, executability, utility, wilson
from gcop.program import Core, CoreOnly, GCoP, Guide
from gcop.programs.math import MathPlan, SolveMath, gsm8k_metric
from gcop.strategy import Verdict

MODEL = "openai/gpt-4o-mini"  # priced in LiteLLM's cost map; served by the loopback API


def lm(api, **kwargs) -> GcopLM:
    return GcopLM(MODEL, api_base=api.base_url, api_key="sk-test-not-a-secret", **kwargs)


def examples(n: int = 4, trick: bool = False) -> list[dspy.Example]:
    word = "trick " if trick else ""
    return [
        dspy.Example(
            id=str(i), question=f"{word}What is {i} plus {10 * i}?", answer=str(11 * i)
        ).with_inputs("question")
        for i in range(1, n + 1)
    ]


def is_guide_prompt(body: dict) -> bool:
    system = body["messages"][0]["content"]
    markers = ("Reply with the plan only", "Reply with JSON only", "fields are:\n1. `strategy`")
    return any(marker in system for marker in markers)


def program(api) -> GCoP:
    return GCoP(Guide(MathPlan, lm(api)), Core(lm(api)))


def test_gcop_prediction_carries_strategy_validity_output_and_costs(api, fresh_cache) -> None:
    prediction = program(api)(question="What is 2 plus 5?")
    assert prediction.validity.ok
    assert isinstance(prediction.strategy, MathPlan)
    assert prediction.strategy_text == "1. Read the two numbers.\n2. Add them together."
    assert prediction.answer == "7"
    for role in ("guide_usage", "core_usage"):
        usage = prediction[role]
        assert usage["calls"] == 1 and usage["prompt_tokens"] > 0 and usage["cost"] > 0
    core_request = api.model.bodies[-1]["messages"][-1]["content"]
    assert "Strategy:\n1. Read the two numbers." in core_request


def test_replies_cut_at_max_tokens_are_counted_per_role(api, fresh_cache) -> None:
    """A reply cut at its budget (`finish_reason: length`) is counted for its role, per
    problem and in the report: the reason a core runs out of room shows in the numbers."""
    roomy = evaluate(program(api), examples(3), gsm8k_metric, system="roomy")
    assert (roomy.guide_truncated, roomy.core_truncated) == (0, 0)
    cramped = GCoP(Guide(MathPlan, lm(api)), Core(lm(api, max_tokens=2)))
    report = evaluate(cramped, examples(3), gsm8k_metric, system="cramped")
    assert (report.guide_truncated, report.core_truncated) == (0, 3)
    assert [o.core_truncated for o in report.outcomes] == [1, 1, 1]
    assert report.accuracy.estimate < roomy.accuracy.estimate  # the answer line was cut off


@pytest.mark.parametrize("adapter", ["plain", "chat", "json", "xml"])
def test_every_prompt_format_runs_guide_and_core(api, fresh_cache, adapter: str) -> None:
    guided = GCoP(Guide(MathPlan, lm(api), adapter=adapter), Core(lm(api), adapter=adapter))
    prediction = guided(question="What is 2 plus 5?")
    sent = api.model.bodies[0]["messages"]
    assert sent == guided.guide.format_prompt(question="What is 2 plus 5?")
    if adapter in ("plain", "chat"):  # the loopback model speaks these two
        assert prediction.validity.verdict is Verdict.VALID and prediction.answer == "7"
    else:  # JSONAdapter (and XMLAdapter's JSON fallback) send a response_format: JSON back
        assert prediction.validity.verdict is Verdict.VALID


def test_constrained_guide_sends_the_schema_and_reads_exact_json(api, fresh_cache) -> None:
    guide = Guide(MathPlan, lm(api), constrained=True)
    prediction = guide(question="What is 2 plus 5?")
    body = api.model.bodies[-1]
    assert body["response_format"]["json_schema"]["schema"] == MathPlan.model_json_schema()
    assert "Reply with JSON only" in body["messages"][0]["content"]
    assert prediction.validity.verdict is Verdict.VALID  # exact JSON is no repair
    with pytest.raises(ValueError, match="cannot read"):
        Guide(MathPlan, lm(api), adapter="chat", constrained=True)


def test_plain_prompt_is_short_and_says_the_layout(api) -> None:
    plain = Guide(MathPlan, lm(api)).format_prompt(question="What is 2 plus 5?")
    chat = Guide(MathPlan, lm(api), adapter="chat").format_prompt(question="What is 2 plus 5?")
    assert len(plain[0]["content"]) < len(chat[0]["content"]) / 2
    assert "numbered lines" in plain[0]["content"] and plain[-1]["content"] == "What is 2 plus 5?"


def test_plain_demos_show_their_working_and_their_answer_line_once(monkeypatch) -> None:
    """A reply read back by the plain adapter keeps its answer line in the working field; a
    demo made of it must not say it twice, and a demo with no working (DSPy's labelled demos
    of question and answer) is left out: a small core copies a bare `Answer: 10`."""
    monkeypatch.setattr("gcop.adapters._WARNED", set())  # not yet warned in this process
    adapter = PlainAdapter()
    reply = "Add 1 and 10.\nAnswer: 11"
    bootstrapped = dspy.Example(question="What is 1 plus 10?", **adapter.parse(SolveMath, reply))
    labelled = dspy.Example(question="What is 2 plus 20?", answer="22")
    with pytest.warns(UserWarning, match=r"1 demo\(s\) without reasoning left out"):
        messages = adapter.format(SolveMath, [labelled, bootstrapped], {"question": "What is 3?"})
    assert [m["content"] for m in messages if m["role"] == "assistant"] == [reply]
    assert "2 plus 20" not in str(messages)
    assert bootstrapped.reasoning == reply  # the metric's fallback still sees the whole reply
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per signature and field, not once per prompt
        adapter.format(SolveMath, [labelled, bootstrapped], {"question": "What is 4?"})


def test_guide_prompt_is_what_the_lm_receives(api, fresh_cache) -> None:
    guide = Guide(MathPlan, lm(api))
    guide(question="What is 1 plus 1?")
    sent = api.model.bodies[-1]["messages"]
    assert [m["content"] for m in sent] == [
        m["content"] for m in guide.format_prompt(question="What is 1 plus 1?")
    ]


def test_invalid_strategy_is_a_value_and_the_core_runs_alone(api, fresh_cache) -> None:
    api.model.plan = "garbage"
    prediction = program(api)(question="What is 2 plus 5?")
    assert prediction.validity.verdict is Verdict.UNPARSEABLE
    assert prediction.strategy is None and "JSON" in prediction.guide_raw
    assert "no JSON, list or plan layout" in prediction.validity.reason
    assert prediction.answer == "7"  # on_invalid="core_alone": a broken plan costs nothing
    skipped = GCoP(Guide(MathPlan, lm(api)), Core(lm(api)), on_invalid="skip")
    assert skipped(question="What is 2 plus 5?").answer is None


def test_evaluate_compares_core_only_and_gcop(api, fresh_cache) -> None:
    data = examples(4, trick=True)  # the core alone is off by one; with a plan it is right
    core = Core(lm(api), task=MathPlan.task)
    alone = evaluate(CoreOnly(core), data, gsm8k_metric, system="core-only", num_threads=4)
    guided = evaluate(program(api), data, gsm8k_metric, system="gcop", num_threads=4)
    assert alone.accuracy.estimate == 0.0 and guided.accuracy.estimate == 1.0
    assert guided.executability.estimate == 1.0 and alone.executability is None
    assert guided.cost_per_query.estimate > alone.cost_per_query.estimate > 0
    assert guided.utility(0.0) == 1.0
    assert utility(0.5, 0.01, 10.0) == pytest.approx(0.4)


def test_leaking_strategies_are_not_executable(api, fresh_cache) -> None:
    api.model.plan = "leaky"
    report = evaluate(program(api), examples(3), gsm8k_metric, num_threads=3)
    assert report.accuracy.estimate == 1.0  # the core still answered
    assert report.executability.estimate == 0.0  # ...but from a plan that gave it away
    assert {o.verdict for o in report.outcomes} == {Verdict.LEAK}


def test_executability_samples_distinct_strategies_with_an_interval(api, fresh_cache) -> None:
    estimate = executability(program(api), examples(3), gsm8k_metric, samples=2, num_threads=2)
    assert estimate.estimate == 1.0 and 0.0 <= estimate.low <= 1.0
    guide_bodies = [b for b in api.model.bodies if is_guide_prompt(b)]
    assert len(guide_bodies) == 6  # 3 examples x 2 samples, each its own call
    assert {b["temperature"] for b in guide_bodies} == {0.7}


def test_wilson_interval() -> None:
    interval = wilson(5, 10)
    assert interval.low == pytest.approx(0.2366, abs=1e-3)
    assert interval.high == pytest.approx(0.7634, abs=1e-3)
    assert wilson(0, 10).low == 0.0 and wilson(10, 10).high == 1.0


def test_saved_program_keeps_its_prompt_formats(api, tmp_path) -> None:
    saved = GCoP(Guide(MathPlan, lm(api), adapter="chat"), Core(lm(api), adapter="xml"))
    loaded = GCoP.load(saved.save(tmp_path / "program"))
    assert (loaded.guide.adapter_name, loaded.core.adapter_name) == ("chat", "xml")
    assert loaded.guide.format_prompt(question="q") == saved.guide.format_prompt(question="q")


def test_saved_program_keeps_the_guides_demos(api, tmp_path) -> None:
    """ExecTune's AS stage is the untrained guide plus accepted plans as demos: a saved
    program that dropped them would be the untrained guide."""
    guide = Guide(MathPlan, lm(api))
    guide.predict.demos = [dspy.Example(question="Ann has 2 bags of 3. How many?",
                                        strategy=MathPlan(steps=["Multiply 2 by 3."]))]  # fmt: skip
    saved = GCoP(guide, Core(lm(api)))
    loaded = GCoP.load(saved.save(tmp_path / "program"))
    assert loaded.guide.format_prompt(question="q") == saved.guide.format_prompt(question="q")
    assert "Multiply 2 by 3." in str(loaded.guide.format_prompt(question="q"))
    assert loaded.guide.predict.demos[0].strategy == MathPlan(steps=["Multiply 2 by 3."])


def test_hiding_computed_values_keeps_the_answer_from_the_core(api, fresh_cache, tmp_path) -> None:
    """Deployment has no gold answer to reject a leaking plan with; hiding every value the
    question does not state means the core never reads one, the answer included."""
    api.model.plan = "leaky"  # "Add the numbers." / "The sum is <answer>."
    strict = GCoP(Guide(MathPlan, lm(api)), Core(lm(api)), hide_computed_values=True)
    prediction = strict(question="What is 2 plus 5?")
    assert prediction.strategy_text == "1. Add the numbers.\n2. The sum is that amount."
    assert "The sum is that amount." in api.model.bodies[-1]["messages"][-1]["content"]
    report = evaluate(strict, examples(3), gsm8k_metric, num_threads=3)
    assert {o.verdict for o in report.outcomes} == {Verdict.VALID}  # what the core read
    assert report.accuracy.estimate == 1.0
    leaky = evaluate(program(api), examples(3), gsm8k_metric, num_threads=3)
    assert {o.verdict for o in leaky.outcomes} == {Verdict.LEAK}  # the default shows it all
    loaded = GCoP.load(strict.save(tmp_path / "strict"))
    assert loaded.hide_computed_values and loaded.with_guide(loaded.guide).hide_computed_values

"""`benchmarks/headline.py` end to end at a tiny size: a registered toy task whose problems
carry reference solutions, a tiny real local guide trained by ExecTune (reference plans ->
acceptance filter -> LoRA SFT), and the loopback HTTP server as the core. Checks the
results file the issue asks for, that its numbers agree with each other, and that a rerun
is served from the call cache and the finished compile."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import dspy
import pytest

from gcop import GCoP, Task, register_task
from gcop.programs.math import MathPlan, core_demo, gsm8k_metric
from tests.test_program import MODEL

HEADLINE = Path(__file__).resolve().parent.parent / "benchmarks" / "headline.py"
NAME = "tiny-solved-sums"


def solved(i: int, trick: bool = False) -> dspy.Example:
    a, b = i, 10 * i
    return dspy.Example(
        id=f"{'t' if trick else ''}{i}",
        question=f"{'trick ' if trick else ''}What is {a} plus {b}?",
        answer=str(a + b),
        solution=f"Add {a} and {b}: {a}+{b} = <<{a}+{b}={a + b}>>{a + b}.\n#### {a + b}",
    ).with_inputs("question")


SPLITS = {
    "train": [solved(i) for i in range(1, 5)],
    "dev": [solved(5)],
    # the loopback core answers "What is a plus b?" right, and wrong when it says "trick"
    "test": [solved(i) for i in range(6, 10)] + [solved(i, trick=True) for i in (10, 11)],
}
register_task(
    Task(name=NAME, strategy_type=MathPlan, metric=gsm8k_metric, load_split=SPLITS.__getitem__,
         guide_max_tokens=16, core_max_tokens=48, description="headline test task",
         core_demo=core_demo)
)  # fmt: skip


def run_headline(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [str(HEADLINE), *args])
    runpy.run_path(str(HEADLINE), run_name="__main__")


def test_headline_results_file(api, tiny_model: str, fresh_cache, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", api.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
    results = tmp_path / "headline.json"
    args = ["--task", NAME, "--core", MODEL, "--guide", f"local/{tiny_model}",
            "--teacher", "reference", "--train", "4", "--dev", "0", "--test", "6",
            "--seeds", "0", "--sft-epochs", "1", "--rl-steps", "0", "--exec-samples", "0",
            "--threads", "4", "--systems", "ceiling,AS+SFT,core-demos",
            "--out", str(tmp_path / "runs"), "--results", str(results)]  # fmt: skip
    run_headline(args, monkeypatch)
    data = json.loads(results.read_text())
    required = {"task", "split", "n", "core", "guide", "acc_core_alone", "acc_guided",
                "p_value", "executability", "cost_core_alone", "cost_guided", "seeds",
                "command"}  # fmt: skip
    assert required <= set(data)
    assert (data["task"], data["split"], data["n"], data["seeds"]) == (NAME, "test", 6, [0])
    assert data["acc_core_alone"] == pytest.approx(4 / 6)  # the two trick questions fail
    assert set(data["systems"]) == {"core alone", "ceiling (reference plans)", "AS+SFT",
                                    "core alone + AS demos", "ExecTune"}  # fmt: skip
    assert data["best_stage_per_seed"] == ["sft"]  # no dev set: the last stage
    alone = data["systems"]["core alone"]["per_seed"][0]["scores"]
    assert sorted(k for k, v in alone.items() if v == 0) == ["t10", "t11"]
    for name in ("ExecTune", "ceiling (reference plans)"):
        versus = data["vs_core_alone"][name]
        mcnemar = versus["mcnemar"][0]
        assert 0.0 <= mcnemar["p_value"] <= 1.0 and 0.0 <= versus["bootstrap"]["p_value"] <= 1.0
        scores = data["systems"][name]["per_seed"][0]["scores"]
        gained = sum(1 for k in alone if alone[k] == 0 and scores[k] > 0)
        assert (mcnemar["gained"], mcnemar["lost"]) == (
            gained, sum(1 for k in alone if alone[k] > 0 and scores[k] == 0))  # fmt: skip
    split = data["gain_by_plan_answer"]["ExecTune"][0]
    assert split["plan_states_answer"]["n"] + split["plan_does_not"]["n"] == 6
    assert data["cost_guided"] > data["cost_core_alone"] > 0  # guided pays the guide too
    assert results.with_suffix(".png").stat().st_size > 0
    assert "--systems ceiling,AS+SFT,core-demos" in data["command"]
    # the control: the core alone, shown the AS guide's demo problems as worked solutions
    shown = [
        b["messages"]
        for b in api.model.bodies
        if any("Add 1 and 10: 1+10 = 11." in m["content"] for m in b["messages"])
    ]
    assert shown and all("Strategy:" not in m["content"] for m in shown[0])
    assert len(shown) == 6 and [m["role"] for m in shown[0]][:3] == ["system", "user", "assistant"]
    assert set(data["vs_core_alone_with_demos"]) == {"AS+SFT", "ExecTune"}
    assert data["acc_core_alone_with_demos"] == data["systems"]["core alone + AS demos"][
        "accuracy"]["mean"]  # fmt: skip
    assert (tmp_path / "runs" / "seed-0" / "sft").is_dir()
    program = tmp_path / "headline-program"  # beside the results file
    saved = GCoP.load(program)  # ExecTune's pick, for `gcop bench --program`
    assert "adapter=" in saved.guide.lm.model and data["program"] == str(program)

    served = api.model.requests
    run_headline(args, monkeypatch)  # everything cached, the compile finished: no calls
    assert api.model.requests == served
    assert json.loads(results.read_text())["systems"].keys() == data["systems"].keys()


def test_unknown_system_is_named(monkeypatch, capsys) -> None:
    with pytest.raises(SystemExit):
        run_headline(["--task", NAME, "--systems", "ceiling,magic"], monkeypatch)
    assert "unknown ['magic']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_headline(["--task", NAME, "--stages", "sample,magic"], monkeypatch)
    assert "--stages: choose some of sample, sft, rl" in capsys.readouterr().err


def test_gain_split_by_whether_the_plan_states_the_answer() -> None:
    by_plan_answer = runpy.run_path(str(HEADLINE))["by_plan_answer"]
    ids = ["a", "b", "c", "d", "e"]
    alone = {"scores": {"a": 0.0, "b": 0.0, "c": 1.0, "d": 0.0, "e": 1.0}}
    guided = {
        "scores": {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0, "e": 0.0},
        "verdicts": {"a": "leak", "b": "leak", "c": "leak", "d": "valid", "e": "valid"},
    }
    split = by_plan_answer(alone, guided, ids)
    assert split["plan_states_answer"] == {
        "n": 3,
        "correct_alone": 1,
        "correct_guided": 3,
        "gained": 2,
        "lost": 0,
        "p_value": 0.5,
    }
    assert split["plan_does_not"] == {
        "n": 2,
        "correct_alone": 1,
        "correct_guided": 1,
        "gained": 1,
        "lost": 1,
        "p_value": 1.0,
    }

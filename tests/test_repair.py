"""Lenient strategy parsing on a corpus of real and typical malformed model outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gcop.programs.code import CodePlan
from gcop.programs.math import MathPlan
from gcop.strategy import StrategyParseError, Verdict

DATA = Path(__file__).parent / "data"
CORPUS = [json.loads(line) for line in (DATA / "malformed_strategies.jsonl").open()]
REAL = [json.loads(line) for line in (DATA / "guide_outputs.jsonl").open()]


@pytest.mark.parametrize("case", CORPUS, ids=[c["note"][:40] for c in CORPUS])
def test_near_misses_are_repaired_and_prose_is_not(case: dict) -> None:
    if case["expect"] == "unparseable":
        with pytest.raises(StrategyParseError):
            MathPlan.from_text(case["output"])
        return
    plan = MathPlan.from_text(case["output"])
    assert plan.steps == case["steps"]
    assert plan.check().verdict is Verdict(case["expect"])
    assert MathPlan.from_text(plan.render()).check().verdict is Verdict.VALID  # canonical form


@pytest.mark.parametrize("case", REAL, ids=[f"{c['model'][-12:]}-{c['format']}-{i}"
                                            for i, c in enumerate(REAL)])  # fmt: skip
def test_real_guide_outputs_keep_their_verdict(case: dict) -> None:
    """Outputs of real models (benchmarks/guide_formats.py) read as they were read then."""
    try:
        plan = MathPlan.from_text(case["output"])
    except StrategyParseError:
        assert case["verdict"] == "unparseable"
        return
    assert case["verdict"] in (plan.check().verdict, "constraint", "over_budget")


def test_multi_field_types_read_their_layout_and_json() -> None:
    plan = CodePlan(approach="Two pointers.", steps=["Sort.", "Walk inward."], edge_cases=["[]"])
    assert CodePlan.from_text(plan.render()) == plan
    assert CodePlan.from_text(plan.render()).check().verdict is Verdict.VALID
    loose = CodePlan.from_text(
        'Here: {"approach": "Two pointers.", "steps": ["Sort.", "Walk inward."]}'
    )
    assert loose.repaired and loose.steps == ["Sort.", "Walk inward."] and loose.edge_cases == []


def test_unparseable_reason_names_what_was_tried() -> None:
    with pytest.raises(StrategyParseError, match="no JSON, list or plan layout"):
        MathPlan.from_text("I would just add them up.")

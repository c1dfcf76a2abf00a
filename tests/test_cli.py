"""The gcop command line through typer's runner: help, errors, models, data and bench."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gcop.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    "args",
    [[], ["bench"], ["demo"], ["models"], ["models", "pull"], ["models", "list"], ["data"],
     ["data", "pull"], ["data", "list"]],
)  # fmt: skip
def test_every_command_has_help(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bench", "nosuchtask"], "unknown task 'nosuchtask'; known tasks: gsm8k"),
        (["bench", "gsm8k", "--core", "gpt4"], "is not a 'provider/model' string"),
        (["bench", "gsm8k", "--core", "local/nope"], "gcop models pull"),
        (["bench", "gsm8k", "--split", "validation"], "unknown split 'validation'"),
        (["models", "pull", "gpt-5"], "unknown model 'gpt-5'"),
        (["data", "pull", "imagenet"], "unknown dataset"),
    ],
)
def test_bad_input_is_one_line_error_with_the_fix(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_bad_option_values_are_rejected_by_the_parser() -> None:
    result = runner.invoke(app, ["bench", "gsm8k", "--limit", "0"])
    assert result.exit_code == 2 and "limit" in result.output


def test_bench_runs_both_systems_and_writes_json_and_png(tiny_model: str, tmp_path: Path) -> None:
    model = f"local/{tiny_model}"
    args = ["bench", "gsm8k", "--core", model, "--guide", model, "--limit", "3",
            "--threads", "3", "--out", str(tmp_path)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "core-only" in result.output and "gcop" in result.output
    saved = json.loads((tmp_path / "bench-gsm8k-dev-0.json").read_text())
    systems = {r["system"]: r for r in saved["reports"]}
    assert set(systems) == {"core-only", "gcop"}
    assert systems["core-only"]["n"] == systems["gcop"]["n"] == 3
    assert systems["gcop"]["guide_tokens_per_query"] > 0
    assert saved["config"]["core"] == model
    assert (tmp_path / "bench-gsm8k-dev-0.png").stat().st_size > 1000
    rerun = runner.invoke(app, args)  # every call is now cached
    again = json.loads((tmp_path / "bench-gsm8k-dev-0.json").read_text())
    assert rerun.exit_code == 0
    assert sum(r["cache_hits"] for r in again["reports"]) == sum(
        r["calls"] for r in again["reports"]
    )


def test_models_list_shows_the_default_model() -> None:
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0 and "smollm2-135m-instruct" in result.output


def test_compile_stage_one_from_the_command_line(tiny_model: str, tmp_path: Path) -> None:
    model = f"local/{tiny_model}"
    args = ["compile", "gsm8k", "--guide", model, "--core", model, "--teacher", model,
            "--stages", "sample", "--limit", "2", "--dev-limit", "2", "--candidates", "1",
            "--output-dir", str(tmp_path)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "sample" / "summary.json").read_text())
    assert summary["attempts"] == 2
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["dev"]) == {"core", "untrained", "sample"}
    assert (tmp_path / "report.png").exists() and (tmp_path / "program" / "program.json").exists()
    assert "acceptance rate" in " ".join(result.output.split())


def test_compile_refuses_a_remote_guide_before_spending(tmp_path: Path, monkeypatch) -> None:
    remote = "openai/gpt-4o-mini"
    args = ["compile", "gsm8k", "--guide", remote, "--core", remote, "--teacher", remote,
            "--stages", "sample,sft", "--output-dir", str(tmp_path)]  # fmt: skip
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "needs OPENAI_API_KEY" in " ".join(result.output.split())
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-used")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "cannot be fine-tuned" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--rl-batch-size", "6"], "not a multiple of num_generations=4"),
        (["--stages", "sample,finetune"], "unknown stages ['finetune']"),
    ],
)
def test_compile_config_errors_are_one_line_before_any_model(option, message, tmp_path) -> None:
    result = runner.invoke(app, ["compile", "gsm8k", "--output-dir", str(tmp_path), *option])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not any(tmp_path.iterdir())

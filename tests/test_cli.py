"""The gcop command line through typer's runner: help, errors, models, data and bench."""

from __future__ import annotations

import io
import json
import logging
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gcop.cli import app, show_stage_lines

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
        (["bench", "nosuchtask"], "unknown task 'nosuchtask'; known tasks: code, gsm8k"),
        (["bench", "gsm8k", "--core", "gpt4"], "is not a 'provider/model' string"),
        (["bench", "gsm8k", "--core", "local/nope"], "gcop models pull"),
        (["bench", "gsm8k", "--split", "validation"], "unknown split 'validation'"),
        (["models", "pull", "gpt-5"], "unknown model 'gpt-5'"),
        (["data", "pull", "imagenet"], "unknown dataset"),
        (["bench", "gsm8k", "--program", "nowhere"], "holds no saved program"),
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
    args = ["compile", "gsm8k", "--guide", model, "--core", model, "--teacher",
            f"{model},reference-givens", "--stages", "sample", "--limit", "2", "--dev-limit",
            "2", "--candidates", "1", "--exec-samples", "2",
            "--output-dir", str(tmp_path)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "sample" / "summary.json").read_text())
    assert summary["attempts"] == 4  # K=1 from the model and one derived plan per example
    assert set(summary["by_source"]) == {model, "reference-givens"}
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["dev"]) == {"core", "untrained", "sample"}
    assert report["dev"]["sample"]["guide_averaged_executability"]["samples"] == 2
    assert (tmp_path / "report.png").exists() and (tmp_path / "program" / "program.json").exists()
    output = " ".join(result.output.split())
    assert "acceptance rate" in output
    assert report["versus_core"]["message"] in output  # whether any stage beat the core alone


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


def test_compile_options_come_from_the_stage_configs_with_their_defaults() -> None:
    import dataclasses

    from gcop.cli import build_compile_command
    from gcop.optimizers.exectune import ExecTune

    options = {p.name: p for p in build_compile_command().params}
    for prefix, config in ExecTune.config_types.items():
        for f in dataclasses.fields(config):
            name = f"{prefix}_{f.name}"
            if f.name in ("seed", "max_completion_length") or name not in options:
                assert f.name in ("seed", "max_completion_length", "target_modules"), name
                continue
            assert options[name].default == f.default, name  # one source of defaults
            assert options[name].help == f.metadata["help"]
    assert options["rl_max_steps"].default == 200 and "--rl-steps" in options["rl_max_steps"].opts
    assert "--cost-weight" in options["reward_cost_weight"].opts


def test_a_generated_option_reaches_its_config_check(tmp_path: Path) -> None:
    args = ["compile", "gsm8k", "--sampling-keep", "best", "--output-dir", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "keep='best'" in result.output


def test_help_is_fast_because_nothing_heavy_is_built_for_it() -> None:
    result = runner.invoke(app, ["--help"])
    assert (
        result.exit_code == 0 and "compile" in result.output and "Compile a guide" in result.output
    )


def test_tables_fit_80_columns() -> None:
    from rich.console import Console

    from gcop.bench import BenchConfig, BenchResult
    from gcop.cli import compile_table, results_table
    from gcop.metrics import Interval, Report

    interval = Interval(0.333, 0.123, 0.612)
    reports = [Report(system, 20, 1, interval, interval if system != "core-only" else None,
                      interval, Interval(1.2e-5, 1e-5, 1.4e-5), 123.0, 456.0, 40, 40, 0)
               for system in ("core-only", "gcop")]  # fmt: skip
    config = BenchConfig(task="gsm8k", core="local/qwen2.5-coder-0.5b-instruct",
                         guide="local/smollm2-135m-instruct")  # fmt: skip
    result = BenchResult(config, reports, {"core-only": 812.0, "gcop": 1413.0}, {})
    row = {
        "accuracy": interval.__dict__,
        "executability": interval.__dict__,
        "valid_rate": interval.__dict__,
        "cost_per_query": {"estimate": 1.23e-5},
        "n": 200,
    }
    report = {
        "dev": dict.fromkeys(("core", "untrained", "sample", "sft", "rl"), row),
        "stages": {"sample": {"acceptance_rate": 0.42, "attempts": 128}},
        "wall_seconds": {"sample": 100.0, "sft": 200.0, "rl": 3000.0, "dev:rl": 40.0},
    }
    for table in (results_table(result), compile_table(report)):
        console = Console(width=80, record=True, force_terminal=False)
        console.print(table)
        text = console.export_text()
        assert max(map(len, text.splitlines())) <= 80
        assert "…" not in text  # nothing cut off
        assert "0.33 [0.12,0.61]" in text


def test_progress_prints_plain_lines_when_not_a_terminal(monkeypatch) -> None:
    import io

    from rich.console import Console

    from gcop.progress import progress

    monkeypatch.setenv("GCOP_PROGRESS_INTERVAL", "0")
    out = io.StringIO()
    with progress(Console(file=out, width=80)) as bars:
        bars.add("core-only", 3)
        for _ in range(3):
            bars.advance("core-only")
    lines = out.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [["core-only", f"{i}/3"] for i in range(4)]
    assert "\x1b" not in out.getvalue()  # plain text, no terminal control codes


def test_the_heartbeat_is_heard_while_a_library_is_silenced() -> None:
    """A log shows a compile is alive while DSPy's optimizers run with their prints
    redirected (`methods.quiet`): the beats go to the stream the console had."""
    import contextlib
    import io

    from rich.console import Console

    from gcop.optimizers.methods import quiet
    from gcop.progress import heartbeat

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        console = Console(width=80)  # writes to sys.stdout, whatever it is at each print
        with heartbeat(console, "running", interval=0.01), quiet():
            print("a library's own progress")
            deadline = time.monotonic() + 10
            while out.getvalue().count("running") < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
    assert out.getvalue().startswith("running: 0 s\n")
    assert "a library's own progress" not in out.getvalue()


def test_plain_progress_shows_a_counter_that_does_not_move(monkeypatch) -> None:
    """A first reply that waits minutes (a model converting) still prints lines in a log."""
    import io

    from rich.console import Console

    from gcop.progress import SILENT_TICKS, progress

    monkeypatch.setenv("GCOP_PROGRESS_INTERVAL", "0.02")
    out = io.StringIO()
    with progress(Console(file=out, width=80)) as bars:
        bars.add("gcop", 12)
        deadline = time.monotonic() + 10
        while out.getvalue().count("gcop") < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        bars.add("done", 1)
        bars.advance("done")
        bars.remove("gcop")  # a cell that ended (here: failed) is not ticked again
        seen = out.getvalue().count("gcop")
        time.sleep(0.02 * SILENT_TICKS * 5)
        assert out.getvalue().count("gcop") == seen
    lines = out.getvalue().splitlines()
    assert [line.split()[:2] for line in lines[:3]] == [["gcop", "0/12"]] * 3
    assert SILENT_TICKS > 1  # a counter that moves is printed when it moves, not ticked
    assert [line.split()[1] for line in lines if line.startswith("done")] == ["0/1", "1/1"]


def test_bench_runs_a_saved_program_beside_its_core(
    tiny_model: str, tmp_path: Path, fresh_cache
) -> None:
    from gcop import Core, GCoP, Guide
    from gcop.programs.math import MathPlan
    from tests import plugin_task

    model = f"local/{tiny_model}"
    GCoP(Guide(MathPlan, model, max_tokens=16), Core(model, max_tokens=32)).save(tmp_path / "p")
    args = ["bench", plugin_task.NAME, "--program", str(tmp_path / "p"), "--limit", "2",
            "--split", "test", "--out", str(tmp_path)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / f"bench-{plugin_task.NAME}-test-0.json").read_text())
    assert [r["system"] for r in saved["reports"]] == ["core-only", "compiled"]
    assert saved["config"]["program"] == "p"  # relative to the report's folder
    assert saved["config"]["core"] == model
    both = runner.invoke(app, [*args, "--guide", model])
    assert both.exit_code == 2 and "drop --guide" in both.output


def test_stage_lines_go_to_the_stderr_of_the_moment(monkeypatch) -> None:
    """A runner closes the stderr a command ran with; later stage lines must not fail."""
    logger = logging.getLogger("gcop.optimizers")
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "level", logger.level)
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    show_stage_lines()
    first.close()  # what CliRunner does to the stream once the command returns
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    logger.info("sample: started")
    assert second.getvalue().rstrip().endswith("sample: started")
    assert "Logging error" not in second.getvalue()

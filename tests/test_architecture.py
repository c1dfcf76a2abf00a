"""The library's boundaries: public API, lazy imports, registries, the teleprompter contract."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import dspy
import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "litellm", "dspy", "transformers")
runner = CliRunner()


def test_public_api_imports_from_gcop() -> None:
    import gcop
    from gcop import CoreOnly, ExecTune, GCoP, Guide, evaluate, executability
    from gcop.metrics import evaluate as metrics_evaluate
    from gcop.optimizers import ExecTune as from_optimizers
    from gcop.optimizers.exectune import ExecTune as from_module
    from gcop.program import Core as program_core

    assert ExecTune is from_optimizers is from_module
    assert issubclass(ExecTune, dspy.teleprompt.Teleprompter)
    assert evaluate is metrics_evaluate and gcop.Core is program_core
    assert all(callable(x) for x in (GCoP, Guide, CoreOnly, executability))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        gcop.Nope  # noqa: B018


def test_importing_gcop_and_its_cli_loads_nothing_heavy_and_sets_nothing() -> None:
    code = (
        "import os, sys; before = dict(os.environ); import gcop, gcop.cli, gcop.registry; "
        f"print([m for m in {HEAVY!r} if m in sys.modules]); print(dict(os.environ) == before)"
    )
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "True"]


def test_command_help_loads_neither_litellm_nor_torch() -> None:
    """`gcop compile --help` builds its options from the optimizer's config dataclasses, which
    import `gcop.lm` and `gcop.local`'s light modules: LiteLLM and torch (seconds each) wait
    for a call, and `gcop.local`'s provider still registers itself when first used."""
    code = (
        "import sys; from typer.testing import CliRunner; from gcop.cli import app; "
        "out = CliRunner().invoke(app, ['compile', '--help']); assert out.exit_code == 0, out; "
        "assert '--rl-learning-rate' in out.output; "
        "print([m for m in ('torch', 'litellm') if m in sys.modules]); "
        "from gcop.local import MODELS; import litellm; "
        "print(any(e['provider'] == 'local' for e in litellm.custom_provider_map))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "True"]


# --- the boundary: the kernel reaches programs and optimizers only through the registry ---

OUTER = ("gcop.optimizers", "gcop.programs")


def outer_imports(source: str) -> list[int]:
    """Lines of `source` that import gcop.optimizers or gcop.programs (or a module under
    them): import statements, `from gcop import optimizers`, and import_module("...")."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            called = getattr(function, "attr", getattr(function, "id", ""))
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        if any(name == outer or name.startswith(outer + ".") for name in names for outer in OUTER):
            lines.append(node.lineno)
    return lines


def test_the_boundary_check_catches_every_form_of_import() -> None:
    for bad in ("import gcop.programs.math", "from gcop.optimizers.exectune import ExecTune",
                "from gcop import programs", "from gcop.programs import data",
                "def f():\n    from gcop.optimizers import sft",
                "import importlib\nimportlib.import_module('gcop.programs.code')"):  # fmt: skip
        assert outer_imports(bad), bad
    assert outer_imports("from gcop.registry import tasks\nimport gcop.program") == []


def test_no_kernel_module_imports_programs_or_optimizers() -> None:
    offenders = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / "gcop").rglob("*.py"))
        if (lines := outer_imports(path.read_text()))
    }
    assert offenders == {}, f"use gcop.registry instead: {offenders}"


# --- registries ---


def test_a_task_registered_in_a_test_file_is_in_bench_help_and_runs(
    tiny_model: str, tmp_path: Path, fresh_cache
) -> None:
    from gcop.cli import app
    from tests import plugin_task

    help_text = runner.invoke(app, ["bench", "--help"]).output
    assert plugin_task.NAME in help_text and "a test task" in " ".join(help_text.split())
    model = f"local/{tiny_model}"
    args = ["bench", plugin_task.NAME, "--core", model, "--guide", model, "--limit", "2",
            "--threads", "2", "--out", str(tmp_path)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / f"bench-{plugin_task.NAME}-dev-0.json").read_text())
    assert [r["n"] for r in saved["reports"]] == [2, 2]


def test_gcop_finds_a_plugin_named_in_the_environment() -> None:
    env = {**os.environ, "GCOP_PLUGINS": "tests.plugin_task", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "gcop", "bench", "--help"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "tiny-sums" in out.stdout and "gsm8k" in out.stdout
    env["GCOP_PLUGINS"] = "no_such_plugin_module"
    out = subprocess.run([sys.executable, "-m", "gcop", "bench", "gsm8k"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 2 and "plugin 'no_such_plugin_module' failed to load" in out.stderr


def test_every_builtin_task_dataset_and_optimizer_is_registered() -> None:
    from gcop.registry import datasets, optimizers, tasks

    assert {"gsm8k", "math500", "humaneval", "mbpp", "code"} <= set(tasks)
    assert list(datasets)[:4] == ["gsm8k", "math500", "mbpp", "humaneval"]
    assert datasets["math500"].prompt_column == "problem"
    assert optimizers["exectune"].__name__ == "ExecTune"


# --- the optimizer contract ---


def test_exectune_compiles_through_dspys_calling_convention(
    api, fresh_cache, tiny_model: str, tmp_path: Path
) -> None:
    from gcop import ExecTune, GCoP
    from gcop.optimizers import SamplingConfig
    from tests.test_exectune import program
    from tests.test_program import examples, lm

    optimizer = ExecTune(metric=plugin_metric(), stages=("sample",), output_dir=tmp_path,
                         sampling=SamplingConfig(candidates=1, num_threads=2))  # fmt: skip
    assert isinstance(optimizer, dspy.teleprompt.Teleprompter)
    assert optimizer.get_params()["output_dir"] == tmp_path
    student = program(api, tiny_model)
    teleprompter: dspy.teleprompt.Teleprompter = optimizer
    compiled = teleprompter.compile(
        student=student, trainset=examples(2), teacher=lm(api), valset=examples(1)
    )
    assert isinstance(compiled, GCoP) and compiled is not student
    assert optimizer.finished("sample") and not optimizer.finished("sft")
    assert set(optimizer.report["dev"]) == {"core", "untrained", "sample"}
    assert json.loads((tmp_path / "config.json").read_text())["config"]["teacher"] == (
        "openai/gpt-4o-mini"
    )
    with pytest.raises(Exception, match="needs a teacher"):
        ExecTune(metric=plugin_metric(), output_dir=tmp_path / "x").compile(student, examples(1))


def plugin_metric():
    from gcop.programs.math import gsm8k_metric

    return gsm8k_metric


def test_stage_dir_is_the_one_rule_for_finished(tmp_path: Path) -> None:
    from gcop.atomic import atomic_dir
    from gcop.optimizers.base import StageDir

    stage = StageDir(tmp_path / "sft", "adapter")
    assert not stage.done
    with pytest.raises(RuntimeError), atomic_dir(stage.marker_path) as partial:
        (partial / "weights").write_text("half")
        raise RuntimeError("killed mid-save")
    assert not stage.done and not list(tmp_path.rglob("*partial*"))
    with atomic_dir(stage.marker_path) as partial:
        (partial / "weights").write_text("all")
    assert stage.done and (stage.marker_path / "weights").read_text() == "all"
    sample = StageDir(tmp_path / "sample", "summary.json")
    sample.finish_json({"attempts": 1})
    assert sample.done and json.loads(sample.marker_path.read_text()) == {"attempts": 1}


def test_reports_hold_no_machine_paths(tmp_path: Path, monkeypatch) -> None:
    from gcop.paths import portable

    monkeypatch.setenv("GCOP_MODELS_DIR", str(tmp_path / "models"))
    run = tmp_path / "run"
    report = {"ledger": {f"local/{tmp_path}/models/smollm2?adapter={run}/rl/adapter": {"calls": 1},
                         "openai/gpt-4o-mini": {"calls": 2}}}  # fmt: skip
    assert portable(report, run) == {
        "ledger": {
            "local/smollm2?adapter=rl/adapter": {"calls": 1},
            "openai/gpt-4o-mini": {"calls": 2},
        }  # fmt: skip
    }


def test_an_empty_registry_says_to_reinstall() -> None:
    from gcop.errors import GcopError
    from gcop.registry import Registry

    with pytest.raises(GcopError, match=r"no widget is registered.*pip install -e \."):
        Registry("widget")["anything"]

"""Every example in examples/ runs as written, at a tiny size: tiny real local models, and a
loopback HTTP server standing in for the API models (LiteLLM reads OPENAI_BASE_URL)."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """Run `examples/<name>` as `python examples/<name> ARGS` would, in this process (the
    imports are already warm, which keeps the test fast); return its exit status."""
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / name), *args])
    try:
        runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def use_loopback(api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", api.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")


def test_quickstart(tiny_model: str, fresh_cache, monkeypatch, capsys) -> None:
    model = f"local/{tiny_model}"
    args = ["--guide", model, "--core", model, "--limit", "2"]
    assert run_example("quickstart.py", args, monkeypatch) == 0
    out = capsys.readouterr().out
    assert "strategy:" in out and "core alone" in out and "guide + core" in out


def test_custom_task(tiny_model: str, fresh_cache, monkeypatch, capsys) -> None:
    model = f"local/{tiny_model}"
    assert run_example("custom_task.py", ["--guide", model, "--core", model], monkeypatch) == 0
    assert "guide + core  accuracy" in capsys.readouterr().out
    from gcop.registry import tasks

    task = tasks["unit-conversions"]  # registered by the example, as a plugin would be
    assert len(task.load_split("dev")) == 4 and task.strategy_type.__name__ == "ConversionPlan"


def test_api_core_without_a_key_says_which_and_exits_1(monkeypatch, capsys) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert run_example("api_core.py", [], monkeypatch) == 1
    assert "needs OPENAI_API_KEY" in capsys.readouterr().err


def test_api_core_with_a_key(api, tiny_model: str, fresh_cache, monkeypatch, capsys) -> None:
    from tests import plugin_task

    use_loopback(api, monkeypatch)
    args = ["--guide", f"local/{tiny_model}", "--task", plugin_task.NAME, "--limit", "2"]
    assert run_example("api_core.py", args, monkeypatch) == 0
    out = capsys.readouterr().out
    assert "core alone    accuracy 1.000" in out  # the loopback core adds correctly
    assert api.model.requests > 0


def test_compile_gsm8k_end_to_end(api, tiny_model: str, fresh_cache, tmp_path, monkeypatch):
    from tests import plugin_task

    use_loopback(api, monkeypatch)
    remote, out = "openai/gpt-4o-mini", tmp_path / "run"
    args = ["--task", plugin_task.NAME, "--guide", f"local/{tiny_model}", "--core", remote,
            "--teacher", remote, "--train", "4", "--dev", "2", "--candidates", "1",
            "--rl-steps", "1", "--output-dir", str(out)]  # fmt: skip
    assert run_example("compile_gsm8k.py", args, monkeypatch) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["dev"]) == {"core", "untrained", "sample", "sft", "rl"}
    assert (out / "program" / "guide_adapter" / "adapter_config.json").exists()
    assert str(out) not in (out / "report.json").read_text()  # relative paths only

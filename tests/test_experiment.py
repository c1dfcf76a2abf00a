"""`gcop experiment`: a tiny grid end to end, a killed run resumed without repeating a call,
the baselines' stage options, and the statistics against values computed by hand."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gcop.attempts import earlier_attempts, still_running
from gcop.cli import app
from gcop.errors import ConfigError
from gcop.experiment import (
    ExperimentConfig,
    Transfer,
    load_config,
    plan_cells,
    settings_changed,
)
from gcop.experiment import _claim_work_dir as claim_work_dir
from gcop.experiment_report import frontier, markdown
from gcop.experiment_stats import (
    aggregate,
    best_baselines,
    paired_comparison,
    paired_seeds,
    plan_split,
    seed_stats,
    summarize_row,
)
from tests import plugin_task
from tests.loopback_api import INSTRUCTION
from tests.test_exectune import _identity, _quiesce
from tests.test_program import examples, lm

ROOT = Path(__file__).resolve().parent.parent
REMOTE = "openai/gpt-4o-mini"  # LiteLLM sends it to the loopback API (OPENAI_BASE_URL)


def write_config(tmp_path: Path, *, methods: list[str], guide: str, teacher: str = REMOTE,
                 exec_samples: int = 2, threads: int = 4, extra: str = "") -> Path:  # fmt: skip
    path = tmp_path / "tiny.toml"
    path.write_text(
        f"""name = "tiny"
task = "{plugin_task.NAME}"
split = "dev"
methods = {json.dumps(methods)}
cores = ["{REMOTE}"]
seeds = [0, 1]
train = 4
dev = 0
guide = "{guide}"
teacher = "{teacher}"
exec_samples = {exec_samples}
threads = {threads}
work_dir = "{tmp_path / "work"}"
results_dir = "{tmp_path / "results"}"
{extra}
[sampling]
candidates = 1
num_threads = 4
"""
    )
    return path


def run_remote_grid(tmp_path: Path, methods: list[str]) -> dict:
    """A grid of `methods` with the loopback API as guide, core and teacher; its results."""
    config = write_config(tmp_path, methods=methods, guide=REMOTE, exec_samples=0)
    result = CliRunner().invoke(app, ["experiment", str(config)])
    assert result.exit_code == 0, result.output
    return json.loads((tmp_path / "results" / "experiment-tiny.json").read_text())


@pytest.fixture
def loopback_env(api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_BASE_URL", api.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
    return api


def test_a_tiny_grid_runs_end_to_end_and_a_rerun_makes_no_call(
    loopback_env, tiny_model: str, fresh_cache, tmp_path: Path
) -> None:
    api = loopback_env
    config = write_config(tmp_path, methods=["core", "exectune-as"], guide=f"local/{tiny_model}",
                          extra='contrasts = [["exectune-as", "core"]]')  # fmt: skip
    result = CliRunner().invoke(app, ["experiment", str(config)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("[")]
    assert [line.split(" | ")[0] for line in lines] == [
        "[1/4] core", "[2/4] exectune-as", "[3/4] core", "[4/4] exectune-as"
    ]  # fmt: skip
    scoring = [line.split() for line in result.output.splitlines() if "scoring" in line]
    finals = {(words[1], words[3]): words[4] for words in scoring if words[4].split("/")[0]
              == words[4].split("/")[1]}  # fmt: skip
    assert finals == {("core", "0"): "4/4", ("core", "1"): "4/4",  # live progress in a log
                      ("exectune-as", "0"): "12/12", ("exectune-as", "1"): "12/12"}  # fmt: skip
    saved = json.loads((tmp_path / "results" / "experiment-tiny.json").read_text())
    assert (tmp_path / "results" / "experiment-tiny.png").stat().st_size > 0
    table = (tmp_path / "results" / "experiment-tiny.md").read_text()
    assert "| core |" in table and "| exectune-as |" in table
    assert len(saved["cells"]) == 4 and saved["n"] == 4
    rows = {row["label"]: row for row in saved["rows"]}
    core, tuned = rows["core"], rows["exectune-as"]
    assert core["accuracy"]["per_seed"] == [1.0, 1.0]  # the loopback core adds correctly
    assert core["guide_cost_per_query"]["mean"] == 0 < core["core_cost_per_query"]["mean"]
    assert core["executability"] is None and tuned["executability"] is not None
    cell = next(c for c in saved["cells"] if c["method"] == "exectune-as")
    assert cell["guide_averaged_executability"]["samples"] == 2
    core_cell = next(c for c in saved["cells"] if c["method"] == "core")
    # each seed's compile ran inside its AS cell's build, and the cell says so
    for as_cell in (c for c in saved["cells"] if c["method"] == "exectune-as"):
        (note,) = as_cell["notes"]["compiled"]
        assert (note["kind"], note["stages"]) == ("exectune", ["sample"])
        # the stage's own time, from the compile's report (rounded: a tiny stage may be 0.0)
        assert 0 <= note["wall_seconds"]["sample"] <= as_cell["wall_seconds"]["build"]
    assert "compiled" not in core_cell["notes"]
    demos = {name: len(prompt["demos"]) for name, prompt in cell["prompt"].items()}
    assert demos == {"guide.predict": 3, "core.alone": 0, "core.guided": 0}  # the AS stage's
    assert not any(prompt["demos"] for prompt in core_cell["prompt"].values())
    assert set(cell["utility"]) == {"0.0", "1000.0", "10000.0"}
    # the tiny random guide never stops before its budget; the loopback core's replies fit
    assert cell["truncated"] == {"guide": 4, "core": 0}
    assert tuned["vs_core_alone"]["against"] == "core" and tuned["vs_core_alone"]["n"] == 4
    assert saved["best_baseline"] == {REMOTE: "core"}  # ExecTune's rows are not baselines
    assert core["by_plan"] is None and sum(p["n"] for p in tuned["by_plan"].values()) == 8
    assert "where the guided rows gain and lose" in table
    contrast = saved["contrasts"][0]  # the pair the config asked for, paired over both seeds
    assert (contrast["name"], contrast["seeds"], contrast["n"]) == ("exectune-as vs core", 2, 4)
    assert "| exectune-as vs core |" in table and "exectune-as vs core" in result.output
    assert (tmp_path / "work" / "compiles" / "exectune").is_dir()
    progress = ("[", "compile ")  # one line each, however long: a log greps them
    table = [line for line in result.stdout.splitlines() if not line.startswith(progress)]
    assert max(map(len, table)) <= 80

    served = api.model.requests
    again = CliRunner().invoke(app, ["experiment", str(config)])
    assert again.exit_code == 0, again.output
    assert again.output.count("done earlier") == 4 and api.model.requests == served

    # --report-only on a grid stopped part-way (one cell gone, a method added): the finished
    # cells' tables, the rest listed, nothing run
    (tmp_path / "work" / "cells" / "exectune-as").glob("*/seed-1.json").__next__().unlink()
    config.write_text(config.read_text().replace('"exectune-as"]', '"exectune-as", "core-cot"]'))
    report = CliRunner().invoke(app, ["experiment", str(config), "--report-only"])
    assert report.exit_code == 0, report.output
    assert api.model.requests == served and "3 of 6 cells not yet run" in report.output
    saved = json.loads((tmp_path / "results" / "experiment-tiny.json").read_text())
    assert [(u["label"], u["seed"]) for u in saved["unfinished"]] == [
        ("core-cot", 0), ("exectune-as", 1), ("core-cot", 1)
    ]  # fmt: skip
    rows = {row["label"]: row for row in saved["rows"]}
    assert set(rows) == {"core", "exectune-as"} and rows["exectune-as"]["seeds"] == [0]
    table = (tmp_path / "results" / "experiment-tiny.md").read_text()
    assert "| exectune-as (seeds 0) |" in table and "cells not yet run" in table


def test_a_memory_or_thread_setting_may_change_between_runs_and_nothing_else(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path, methods=["core"], guide="local/x")
    claim_work_dir(load_config(path))
    text = path.read_text()
    path.write_text(
        text.replace("num_threads = 4", "num_threads = 1") + "\n[sft]\nmicro_batch_size = 1\n"
    )  # after a run killed for memory
    claim_work_dir(load_config(path))
    path.write_text(text + "\n[sft]\nper_device_batch_size = 4\n")
    with pytest.raises(ConfigError, match=r"other settings \(stage_options\)"):
        claim_work_dir(load_config(path))


def test_changed_settings_are_refused_and_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    path = write_config(tmp_path, methods=["core"], guide="local/x")
    config = load_config(path)
    assert [c.label for c in plan_cells(config)] == ["core", "core"]
    assert config.stage_options == {"sampling": {"candidates": 1, "num_threads": 4}}
    (tmp_path / "bad.toml").write_text('name = "b"\ntask = "gsm8k"\nmethod = ["core"]\n')
    result = CliRunner().invoke(app, ["experiment", str(tmp_path / "bad.toml")])
    assert result.exit_code == 2 and "unknown keys ['method']" in result.output
    result = CliRunner().invoke(app, ["experiment", str(tmp_path / "none.toml")])
    assert result.exit_code == 2 and "no experiment file" in result.output
    result = CliRunner().invoke(app, ["experiment", str(path), "--report-only"])
    assert result.exit_code == 2 and "holds no run of this experiment" in result.output
    assert not (tmp_path / "work").exists()  # a report creates no work folder
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "experiment.json").write_text(json.dumps({"task": "other"}))
    result = CliRunner().invoke(app, ["experiment", str(path)])
    assert result.exit_code == 2 and "holds cells made with other settings" in result.output
    with pytest.raises(ConfigError, match=r"contrasts entry \['core'\]: give two"):
        ExperimentConfig("x", "gsm8k", ["core", "core-cot"], ["a/b"], contrasts=[["core"]])
    with pytest.raises(ConfigError, match="give two of the listed methods"):
        ExperimentConfig("x", "gsm8k", ["core"], ["a/b"], contrasts=[["core", "gcop-base"]])
    with pytest.raises(ConfigError, match="transfer stage 'sample'"):
        ExperimentConfig("x", "gsm8k", ["core"], ["a/b"],
                         transfer=[Transfer("a/b", "c/d", stage="sample")])  # fmt: skip


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("[rl]\nmax_step = 3",
         "[rl] of {path}: unknown option 'max_step' (did you mean 'max_steps'?)"),
        ('[sft]\nepochs = "three"',
         "[sft] of {path}: epochs = 'three': Input should be a valid number"),
        ("[reward]\nsucess = 1.0", "unknown option 'sucess' (did you mean 'success'?)"),
        ('[[transfer]]\nsource = "a/b"\ntraget = "c/d"',
         "{path}: [[transfer]] entry 1: unknown option 'traget' (did you mean 'target'?)"),
        ('[[transfer]]\nsource = "a/b"', "entry 1: Transfer.__init__() missing 1 required"),
    ],
)  # fmt: skip
def test_a_mistyped_stage_option_is_refused_before_any_call(
    tmp_path: Path, table: str, expected: str
) -> None:
    """A typo in a stage table used to surface only when the first compile started, after
    the core cells' calls (and in a table, rich ate the `[rl]` of the message)."""
    path = write_config(tmp_path, methods=["core", "exectune-sft"], guide="local/x")
    path.write_text(path.read_text().replace("[sampling]", f"{table}\n\n[sampling]"))
    result = CliRunner().invoke(app, ["experiment", str(path)])
    assert result.exit_code == 2, result.output
    assert expected.format(path=path) in " ".join(result.output.split())
    assert not (tmp_path / "work").exists()  # refused before the work folder is made


def test_method_and_seed_run_part_of_the_grid_and_report_all_of_it(
    loopback_env, fresh_cache, tmp_path: Path
) -> None:
    api = loopback_env
    config = write_config(tmp_path, methods=["core", "gcop-base"], guide=REMOTE, exec_samples=0)
    part = ["experiment", str(config), "--method", "gcop-base", "--seed", "1"]
    result = CliRunner().invoke(app, part)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("[")]
    assert [line.split(" | ")[0] for line in lines] == ["[4/4] gcop-base"]
    assert "3 of 4 cells not yet run" in result.output
    assert "rerun without --method or --seed" in result.output
    saved = json.loads((tmp_path / "results" / "experiment-tiny.json").read_text())
    assert [(c["method"], c["seed"]) for c in saved["cells"]] == [("gcop-base", 1)]
    assert [(u["label"], u["seed"]) for u in saved["unfinished"]] == [
        ("core", 0), ("gcop-base", 0), ("core", 1)
    ]  # fmt: skip
    served = api.model.requests

    asks = ((["--method", "core-cot"], "method core-cot"), (["--seed", "7"], "seed 7"))
    for flags, named in asks:
        refused = CliRunner().invoke(app, ["experiment", str(config), *flags])
        assert refused.exit_code == 2 and f"{named} is not in this experiment" in refused.output
    assert api.model.requests == served  # refused before any call

    whole = CliRunner().invoke(app, ["experiment", str(config)])
    assert whole.exit_code == 0, whole.output
    lines = [line for line in whole.output.splitlines() if line.startswith("[")]
    assert ["done earlier" in line for line in lines] == [False, False, False, True]
    saved = json.loads((tmp_path / "results" / "experiment-tiny.json").read_text())
    assert saved["unfinished"] == [] and len(saved["cells"]) == 4


def test_reuse_takes_a_results_files_cells_into_a_new_work_folder(
    loopback_env, fresh_cache, tmp_path: Path
) -> None:
    """A published grid extended on another machine: its cells are read back, not run."""
    api = loopback_env
    config = write_config(tmp_path, methods=["core"], guide=REMOTE, exec_samples=0)
    assert CliRunner().invoke(app, ["experiment", str(config), "--seed", "0"]).exit_code == 0
    published = tmp_path / "published.json"
    published.write_text((tmp_path / "results" / "experiment-tiny.json").read_text())
    served = api.model.requests

    elsewhere = ["experiment", str(config), "--work-dir", str(tmp_path / "elsewhere")]
    result = CliRunner().invoke(app, [*elsewhere, "--reuse", str(published)])
    assert result.exit_code == 0, result.output
    assert f"reused 1 cells of {published}" in " ".join(result.output.split())
    lines = [line for line in result.output.splitlines() if line.startswith("[")]
    assert ["done earlier" in line for line in lines] == [True, False]  # seed 1 is run
    assert api.model.requests == served  # the core is greedy: seed 1 replays the cache
    cell = tmp_path / "elsewhere" / "cells" / "core" / "openai_gpt-4o-mini" / "seed-0.json"
    assert json.loads(cell.read_text()) == json.loads(published.read_text())["cells"][0]

    config.write_text(config.read_text().replace("train = 4", "train = 3"))
    other = ["experiment", str(config), "--work-dir", str(tmp_path / "third")]
    refused = CliRunner().invoke(app, [*other, "--reuse", str(published)])
    assert refused.exit_code == 2 and "made with other settings (train)" in refused.output
    old = json.loads(published.read_text())
    del old["identity"]  # a results file written before the settings were recorded
    published.write_text(json.dumps(old))
    refused = CliRunner().invoke(app, [*other, "--reuse", str(published)])
    said = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "write it again with --report-only" in said
    assert "run the grid without --reuse" in said  # a way on when that machine is gone
    assert not (tmp_path / "third" / "cells").exists()  # refused before any cell


@pytest.mark.parametrize(
    "results", sorted((ROOT / "docs" / "results").glob("experiment-*.json")), ids=lambda p: p.stem
)
def test_each_published_grid_records_the_settings_of_the_config_that_reproduces_it(
    results: Path,
) -> None:
    """`--reuse` extends a published grid on another machine only if its results file
    records its cells' settings, and those are its config's: a config edited after its
    grid ran (another SFT epoch count, say) would otherwise mix cells of two setups."""
    published = json.loads(results.read_text())
    command = published["command"].split()
    config = next(word for word in command if word.endswith(".toml"))
    assert "identity" in published, f"{results.name} does not record its settings"
    changed = settings_changed(published["identity"], load_config(ROOT / config).identity())
    assert not changed, (  # the check --reuse makes: speed options may differ
        f"{results.name} was not made with {config} as it is now ({', '.join(changed)}): "
        "rerun the grid, or write its results again with --report-only where it was made"
    )


def test_a_guide_transfer_moves_the_compiled_guide_and_retunes_it_on_the_target(
    loopback_env, tiny_model: str, fresh_cache, tmp_path: Path, monkeypatch
) -> None:
    """The guide compiled for core A, on core B as it is and after RL there from A's
    adapter, each tested against B's core alone, which the grid adds for the transfer."""
    from safetensors.torch import load_file

    api, target = loopback_env, "openai/gpt-4o"
    transfer = (f'[[transfer]]\nsource = "{REMOTE}"\ntarget = "{target}"\nstage = "sft"\n'
                "[sft]\nepochs = 1\nper_device_batch_size = 4\n"
                "[rl]\nmax_steps = 2\nnum_generations = 2\nper_device_batch_size = 4\n"
                "max_completion_length = 16\nsave_steps = 1\n")  # fmt: skip
    config = write_config(tmp_path, methods=["core", "exectune-sft"], guide=f"local/{tiny_model}",
                          exec_samples=0, extra=transfer)  # fmt: skip
    config.write_text(
        config.read_text()
        .replace("seeds = [0, 1]", "seeds = [0]")
        .replace(str(tmp_path / "work"), "work")
    )  # as configs say it
    monkeypatch.chdir(tmp_path)
    planned = [(c.label, c.core) for c in plan_cells(load_config(config))]
    moved = f"from {REMOTE}"
    source_cells = [("core", REMOTE), ("exectune-sft", REMOTE)]
    target_cells = [("core", target), (f"transfer-sft {moved}", target)]
    assert planned == [*source_cells, *target_cells, (f"retune-sft {moved}", target)]
    # the moved guide first: the report of a grid whose re-tuned cell is not run yet
    first = ["--method", "core", "--method", "exectune-sft", "--method", "transfer"]
    result = CliRunner().invoke(app, ["experiment", str(config), *first])
    assert result.exit_code == 0, result.output
    partial = json.loads((tmp_path / "results" / "experiment-tiny.json").read_text())
    assert partial["transfer"][0]["retune"] is None and partial["transfer"][0]["transfer"]
    assert [u["label"] for u in partial["unfinished"]] == [f"retune-sft {moved}"]
    result = CliRunner().invoke(app, ["experiment", str(config)])
    assert result.exit_code == 0, result.output
    assert {body["model"] for body in api.model.bodies} >= {"gpt-4o-mini", "gpt-4o"}

    saved = json.loads((tmp_path / "results" / "experiment-tiny.json").read_text())
    cells = {(c["label"], c["core"]): c for c in saved["cells"]}
    compiles = tmp_path / "work" / "compiles"
    source_sft = compiles / "exectune" / "openai_gpt-4o-mini" / "seed-0" / "sft" / "adapter"
    retuned = next((compiles / f"retune-sft-from-{REMOTE.replace('/', '_')}").glob("*/seed-0"))
    assert not (retuned / "sample").exists() and not (retuned / "sft").exists()  # RL only
    sft = load_file(source_sft / "adapter_model.safetensors")
    rl = load_file(retuned / "rl" / "adapter" / "adapter_model.safetensors")
    lora_b = [name for name in sft if "lora_B" in name]  # a fresh LoRA starts at B = 0
    moved_by_rl = sum(float((rl[n] - sft[n]).norm()) for n in lora_b)
    assert 0 < moved_by_rl < 0.1 * sum(float(sft[n].norm()) for n in lora_b)  # from A's
    notes = cells[(f"retune-sft {moved}", target)]["notes"]["retune"]
    assert notes["wall_seconds"] > 0 and notes["source_compile_wall_seconds"] > 0
    rows = {(row["label"], row["core"]): row for row in saved["rows"]}
    for kind in ("transfer", "retune"):  # paired with the target's own core alone
        versus = rows[(f"{kind}-sft {moved}", target)]["vs_core_alone"]
        assert versus["against"] == "core" and versus["n"] == 4
    (summary,) = saved["transfer"]
    assert summary["core_alone"] == rows[("core", target)]["accuracy"]
    assert summary["transfer"] is not None and summary["retune"] is not None
    table = (tmp_path / "results" / "experiment-tiny.md").read_text()
    assert "## guide transfer" in table

    # every guided cell saved the program it scored; the core alone has none to save
    assert cells[("core", target)]["program"] is None
    retune_cell = cells[(f"retune-sft {moved}", target)]
    assert retune_cell["program"].startswith("cells/")  # relative to the work folder
    program = tmp_path / "work" / retune_cell["program"]
    copied = load_file(program / "guide_adapter" / "adapter_model.safetensors")
    assert all(bool((copied[n] == rl[n]).all()) for n in rl)  # the retuned adapter, not A's
    # replayed by `gcop bench --program` on the grid's problems: the cell's scores again
    args = ["bench", plugin_task.NAME, "--program", str(program), "--split", "dev",
            "--limit", "4", "--out", str(tmp_path / "replay")]  # fmt: skip
    replay = CliRunner().invoke(app, args)
    assert replay.exit_code == 0, replay.output
    bench = json.loads(next((tmp_path / "replay").glob("bench-*.json")).read_text())
    (compiled,) = [r for r in bench["reports"] if r["system"] == "compiled"]
    assert {o["example_id"]: o["score"] for o in compiled["outcomes"]} == retune_cell["scores"]


def test_a_killed_experiment_resumes_without_repeating_a_call(loopback_env, tmp_path: Path) -> None:
    api = loopback_env
    config = write_config(tmp_path, methods=["core", "gcop-base"], guide=REMOTE, exec_samples=0,
                          threads=1)  # fmt: skip
    cache = tmp_path / "calls"
    env = {
        **os.environ,
        "GCOP_PLUGINS": "tests.plugin_task",
        "GCOP_CACHE_DIR": str(cache),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "gcop", "experiment", str(config)]
    first_cell = tmp_path / "work" / "cells" / "core" / "openai_gpt-4o-mini" / "seed-0.json"
    api.model.delay = 0.3
    victim = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    while not (first_cell.exists() and api.model.requests >= 6) and time.monotonic() < deadline:
        assert victim.poll() is None, "the experiment ended before it could be killed"
        time.sleep(0.05)
    _quiesce(api, cache)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "results" / "experiment-tiny.json").exists()
    killed_cell = tmp_path / "work" / "cells" / "gcop-base" / "openai_gpt-4o-mini" / "seed-0.json"
    [attempt] = earlier_attempts(killed_cell)  # SIGKILL: nothing in the log, but this
    assert attempt["pid"] == victim.pid and still_running(attempt) is False
    report = CliRunner().invoke(app, ["experiment", str(config), "--report-only"])
    assert report.exit_code == 0, report.output
    table = (tmp_path / "results" / "experiment-tiny.md").read_text()
    assert f"gcop-base (seed 0) was started {attempt['started']}" in table
    assert "ended without finishing it" in table
    written = first_cell.read_text()
    api.model.delay = 0.0
    served_before = len(api.model.bodies)
    answered_before = Counter(_identity(b) for b in api.model.answered)

    resumed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "[1/4] core | " in resumed.stdout and "done earlier" in resumed.stdout
    assert first_cell.read_text() == written  # a finished cell is read back, not redone
    assert f"gcop-base ({REMOTE}, seed 0) was started" in resumed.stdout
    assert f"process {victim.pid}" in resumed.stdout and "dmesg" in resumed.stdout
    assert json.loads(killed_cell.read_text())["interrupted_attempts"] == [attempt]
    assert earlier_attempts(killed_cell) == []  # finished: no attempt left open
    asked_after = Counter(_identity(b) for b in api.model.bodies[served_before:])
    assert asked_after, "the killed cell had calls left to make"
    assert {k for k in asked_after if answered_before[k] + asked_after[k] > 1} == set()
    saved = json.loads((tmp_path / "results" / "experiment-tiny.json").read_text())
    assert [row["label"] for row in saved["rows"]] == ["core", "gcop-base"]
    assert saved["rows"][1]["accuracy"]["per_seed"] == [1.0, 1.0]


@pytest.fixture
def flaky_method():
    """A method registered the way a plugin does, failing until `state["broken"]` is False."""
    from gcop.experiment import Method
    from gcop.program import Core, CoreOnly
    from gcop.registry import methods, register_method

    state = {"broken": True}

    def build(context):
        if state["broken"]:
            raise RuntimeError("the optimizer gave up | on purpose\nsecond line")
        return CoreOnly(Core(context.core, task=context.task.signature, max_tokens=48))

    register_method(Method("flaky", "fails until told not to", build))
    yield state
    methods.unregister("flaky")


def test_a_failing_method_is_recorded_the_grid_goes_on_and_a_rerun_retries_it(
    loopback_env, fresh_cache, flaky_method, tmp_path: Path
) -> None:
    config = write_config(tmp_path, methods=["core", "flaky"], guide=REMOTE, exec_samples=0)
    result = CliRunner().invoke(app, ["experiment", str(config)])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("[")]
    assert [line.split(" | ")[0] for line in lines] == [
        "[1/4] core", "[2/4] flaky", "[3/4] core", "[4/4] flaky"
    ]  # fmt: skip
    assert lines[1].endswith("| FAILED RuntimeError: the optimizer gave up | on purpose")
    assert ("2 of 4 cells failed: flaky (gpt-4o-mini, seed 0), flaky (gpt-4o-mini, seed 1);"
            in " ".join(result.output.split()))  # fmt: skip
    cell = tmp_path / "work" / "cells" / "flaky" / "openai_gpt-4o-mini" / "seed-1.json"
    written = json.loads(cell.read_text())
    assert written["status"] == "failed" and written["error"]["type"] == "RuntimeError"
    assert "build" in written["error"]["traceback"]
    saved = json.loads((tmp_path / "results" / "experiment-tiny.json").read_text())
    assert [row["label"] for row in saved["rows"]] == ["core"]
    assert [(f["label"], f["seed"]) for f in saved["failed"]] == [("flaky", 0), ("flaky", 1)]
    table = (tmp_path / "results" / "experiment-tiny.md").read_text()
    assert "| flaky | `openai/gpt-4o-mini` | 1 | RuntimeError: the optimizer gave up \\|" in table

    flaky_method["broken"] = False
    again = CliRunner().invoke(app, ["experiment", str(config)])
    assert again.exit_code == 0, again.output
    lines = [line for line in again.output.splitlines() if line.startswith("[")]
    assert ["done earlier" in line for line in lines] == [True, False, True, False]
    saved = json.loads((tmp_path / "results" / "experiment-tiny.json").read_text())
    assert saved["failed"] == [] and [row["label"] for row in saved["rows"]] == ["core", "flaky"]
    assert saved["rows"][1]["vs_core_alone"]["n"] == 4


def test_a_cell_stopped_by_the_budget_is_retried_with_a_larger_one(
    loopback_env, fresh_cache, tmp_path: Path
) -> None:
    config = write_config(tmp_path, methods=["core"], guide=REMOTE, exec_samples=0, threads=1,
                          extra="budget_dollars = 1e-12")  # fmt: skip
    result = CliRunner().invoke(app, ["experiment", str(config)])
    assert result.exit_code == 1 and "FAILED BudgetExceededError: spending budget" in result.output
    config.write_text(config.read_text().replace("budget_dollars = 1e-12", ""))
    again = CliRunner().invoke(app, ["experiment", str(config)])
    assert again.exit_code == 0, again.output
    saved = json.loads((tmp_path / "results" / "experiment-tiny.json").read_text())
    assert saved["rows"][0]["accuracy"]["per_seed"] == [1.0, 1.0]
    assert all(c["failed_calls"] == 0 for c in saved["cells"])


def test_core_demos_shows_the_core_the_problems_the_as_guide_is_shown(
    loopback_env, fresh_cache, tmp_path: Path
) -> None:
    """The control for a few-shot guide: the core alone, with the AS stage's demo problems
    as worked solutions (the task's `core_demo`), and no plan."""
    api = loopback_env
    saved = run_remote_grid(tmp_path, ["core-demos", "exectune-as"])
    assert {c["method"] for c in saved["cells"] if c.get("error") is None} == {
        "core-demos", "exectune-as"}  # fmt: skip
    with_demos = [b["messages"] for b in api.model.bodies
                  if any(m["role"] == "assistant" and m["content"].startswith("Add the two")
                         for m in b["messages"])]  # fmt: skip
    assert with_demos, "no core call was shown the worked solutions"
    for messages in with_demos:
        assert not any("Strategy:" in m["content"] for m in messages)  # the core alone
        shown = [m["content"] for m in messages[1:-1] if m["role"] == "user"]
        assert shown and all(q.startswith("trick What is") for q in shown)  # train problems
    rows = {row["label"]: row for row in saved["rows"]}
    assert rows["core-demos"]["executability"] is None  # no guide, so no executability


def test_core_demos_on_a_task_without_worked_solutions_says_so(fresh_cache, tmp_path: Path):
    import dataclasses

    from gcop.registry import register_task

    unsolved = dataclasses.replace(plugin_task.TASK, name="tiny-sums-unsolved", core_demo=None)
    register_task(unsolved)
    config = write_config(tmp_path, methods=["core-demos"], guide=REMOTE, exec_samples=0)
    config.write_text(config.read_text().replace(plugin_task.NAME, unsolved.name))
    result = CliRunner().invoke(app, ["experiment", str(config)])
    assert result.exit_code == 1  # before any model call (no API is running)
    assert "has no worked solutions to show the core" in " ".join(result.output.split())


@pytest.mark.parametrize("path", sorted((ROOT / "examples" / "experiments").glob("*.toml")),
                         ids=lambda path: path.stem)  # fmt: skip
def test_the_example_grids_load_and_name_registered_methods(path: Path) -> None:
    from gcop.experiment import check_stage_options
    from gcop.registry import get_task, methods

    config = load_config(path)
    task = get_task(config.task)
    assert all(m in methods for m in config.methods) and config.seeds
    assert "core-demos" not in config.methods or task.core_demo is not None  # worked solutions
    assert len(plan_cells(config)) >= len(config.seeds) * len(config.methods)
    check_stage_options(config)  # raises on a mistyped option


# -- the baselines' stage options -------------------------------------------------------


def test_supervised_sampling_keeps_every_parsed_strategy_without_a_core_call(
    api, fresh_cache, caplog: pytest.LogCaptureFixture
) -> None:
    from gcop.optimizers.sampling import SamplingConfig, sample_strategies
    from gcop.program import Core, GCoP, Guide
    from gcop.programs.math import MathPlan, gsm8k_metric

    api.model.plan = "leaky"  # every plan states the sum: the acceptance filter rejects all
    program = GCoP(Guide(MathPlan, lm(api)), Core(lm(api)))
    run = lambda accept: sample_strategies(  # noqa: E731
        program, examples(3), teacher=lm(api), metric=gsm8k_metric,
        config=SamplingConfig(candidates=1, accept=accept),
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="gcop.optimizers"):
        assert run("executes").accepted == []
    # a progress line per judged strategy at this size (a tenth of 3 rounds down to 1)
    assert [r.getMessage().rsplit(",", 1)[0] for r in caplog.records] == [
        f"sample: {k}/3 judged, 0 accepted" for k in (1, 2, 3)]  # fmt: skip
    before = api.model.requests
    kept = run("parsed")
    assert len(kept.accepted) == 3 and all(a.core_cost == 0 for a in kept.accepted)
    assert api.model.requests == before  # teacher calls cached, and no core call at all
    with pytest.raises(ConfigError, match="accept='all'"):
        SamplingConfig(accept="all")


def test_advisor_reward_is_the_task_reward_of_what_deployment_returns(api, fresh_cache) -> None:
    from gcop.optimizers.reward import ExecutabilityReward, RewardWeights
    from gcop.program import Core, GCoP, Guide
    from gcop.programs.math import MathPlan, gsm8k_metric

    program = GCoP(Guide(MathPlan, lm(api)), Core(lm(api)))
    problems = examples(2, trick=True)  # the core alone gets trick questions wrong
    leaky = "1. Add the numbers.\n2. The sum is 11."
    advisor = ExecutabilityReward(program, problems, gsm8k_metric, RewardWeights(task_only=True))
    execution = ExecutabilityReward(program, problems, gsm8k_metric, RewardWeights())
    assert advisor([None] * 2, [leaky, "no plan here"], [0, 0]) == [1.0, 0.0]
    assert execution.score(leaky, 0).leak == 1.0  # ExecTune's reward penalises the leak
    clean = "1. Read the two numbers.\n2. Add them together."
    assert advisor([None], [clean], [1]) == [1.0]


def test_compile_identity_leaves_out_new_options_at_their_default(
    api, tiny_model: str, tmp_path: Path
) -> None:
    from gcop.optimizers.exectune import ExecTune
    from gcop.optimizers.sampling import SamplingConfig
    from gcop.program import Core, GCoP, Guide
    from gcop.programs.math import MathPlan, gsm8k_metric

    program = GCoP(Guide(MathPlan, f"local/{tiny_model}"), Core(lm(api)))
    for name, sampling in (("old", SamplingConfig()), ("new", SamplingConfig(accept="parsed"))):
        ExecTune(lm(api), gsm8k_metric, sampling=sampling,
                 output_dir=tmp_path / name)._claim_output_dir(program)  # fmt: skip
    old = json.loads((tmp_path / "old" / "config.json").read_text())["config"]
    new = json.loads((tmp_path / "new" / "config.json").read_text())["config"]
    assert "accept" not in old["sampling"] and "task_only" not in old["reward"]
    assert "precision" not in old["sft"] and "precision" not in old["rl"]
    assert new["sampling"]["accept"] == "parsed"


# -- statistics, by hand ----------------------------------------------------------------


def test_seed_stats_by_hand() -> None:
    stats = seed_stats([0.5, 0.7, 0.9])
    assert stats["mean"] == pytest.approx(0.7)
    assert stats["std"] == pytest.approx(0.2)  # sqrt((0.04 + 0 + 0.04) / 2)
    assert seed_stats([0.4]) == {"mean": 0.4, "std": 0.0, "per_seed": [0.4]}


def test_paired_comparison_by_hand() -> None:
    alone = [{"a": 0.0, "b": 0.0, "c": 1.0, "d": 0.0, "e": 0.0, "f": 0.0}]  # one seed, reused
    seeds = [
        {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0, "e": 1.0, "f": 1.0},  # gained 5, lost 0
        {"a": 1.0, "b": 1.0, "c": 0.0, "d": 0.0, "e": 0.0, "f": 0.0},  # gained 2, lost 1
    ]
    result = paired_comparison(alone, seeds)
    assert result["n"] == 6
    assert result["mcnemar"] == [
        {"gained": 5, "lost": 0, "p_value": pytest.approx(2 / 32)},
        {"gained": 2, "lost": 1, "p_value": 1.0},  # 2 * (C(3,0) + C(3,1)) / 8, capped
    ]
    # per problem, new - old averaged over seeds: a 1, b 1, c -0.5, d .5, e .5, f .5
    assert result["bootstrap"]["difference"] == pytest.approx(3.0 / 6)
    # a problem one row did not score (a failed call) is left out, not counted as wrong
    partial = paired_comparison([{"a": 0.0, "b": 1.0}], [{"a": 1.0}])
    assert partial["n"] == 1 and partial["mcnemar"] == [{"gained": 1, "lost": 0, "p_value": 1.0}]
    assert partial["bootstrap"]["difference"] == 1.0
    # seeds pair by number only (a failed or not yet run cell leaves its seed out)
    a, b, c = {"p": 0.0}, {"p": 1.0}, {"p": 0.5}
    assert paired_seeds({0: a, 1: b, 2: c}, {0: b, 2: a}) == ([a, c], [b, a])
    assert paired_seeds({0: a}, {0: c, 1: b, 2: c}) == ([a], [c])
    assert paired_seeds({}, {0: a}) == paired_seeds({0: a, 1: b}, {2: c, 3: a}) == ([], [])


def cell(label: str, seed: int, accuracy: float, cost: float, baseline: bool = True) -> dict:
    return {"label": label, "method": label, "core": "c/x", "seed": seed, "transfer": None,
            "baseline": baseline, "guided": False, "n": 10,
            "accuracy": {"estimate": accuracy}, "executability": None,
            "guide_averaged_executability": None, "cost_per_query": {"estimate": cost},
            "guide_cost_per_query": 0.0, "core_cost_per_query": cost,
            "utility": {"1000.0": accuracy - 1000 * cost}}  # fmt: skip


def test_rows_best_baseline_and_frontier_by_hand() -> None:
    row = summarize_row([cell("m", 1, 0.6, 2e-4), cell("m", 0, 0.4, 1e-4)], [1000.0])
    assert row["seeds"] == [0, 1] and row["accuracy"]["per_seed"] == [0.4, 0.6]
    assert row["accuracy"]["mean"] == pytest.approx(0.5)
    assert row["accuracy"]["std"] == pytest.approx(math.sqrt(0.02))
    assert row["utility"]["1000.0"]["mean"] == pytest.approx(0.5 - 0.15)
    other = summarize_row([cell("m", 0, 0.4, 1e-4)], [100.0])  # not the lambdas of the cells
    assert other["utility"]["100.0"]["mean"] == pytest.approx(0.4 - 0.01)
    low, high = row["accuracy_interval"]["low"], row["accuracy_interval"]["high"]
    assert (round(low, 3), round(high, 3)) == (0.237, 0.763)  # Wilson, 5 of 10
    listed = (("core", 0.5, 2.0, True), ("cot", 0.5, 1.0, True), ("few", 0.4, 0.5, True),
              ("tuned", 0.9, 3.0, False))  # fmt: skip
    rows = [summarize_row([cell(name, 0, acc, cost, base)], [1000.0])
            for name, acc, cost, base in listed]  # fmt: skip
    assert best_baselines(rows) == {"c/x": "cot"}  # tied with core, cheaper; tuned not a baseline
    assert frontier([(1, 0.5), (2, 0.4), (3, 0.7), (0.5, 0.5)]) == [3, 2]


def test_contrasts_pair_one_ingredient_by_seed_and_by_hand() -> None:
    """The built-in ablation (the acceptance filter: exectune-sft against gcop-supervised)
    and a contrast from the config, paired by seed number: a seed one row has not run yet
    is left out, never paired with another seed."""

    def scored(label: str, seed: int, scores: list[float], baseline: bool = True) -> dict:
        return {**cell(label, seed, sum(scores) / len(scores), 1e-4, baseline),
                "n": len(scores), "scores": {str(i): v for i, v in enumerate(scores)}}  # fmt: skip

    cells = [
        scored("core", 0, [1, 0, 0, 0]), scored("core", 1, [1, 0, 0, 0]),
        scored("gcop-supervised", 0, [0, 0, 0, 0]), scored("gcop-supervised", 1, [1, 1, 0, 0]),
        scored("exectune-sft", 0, [1, 1, 1, 0], False),  # gained 3 of seed 0's problems
        scored("exectune-sft", 1, [1, 0, 0, 0], False),  # lost 1 of seed 1's
        scored("exectune-as", 0, [0, 0, 0, 0], False),  # seed 1 not run yet
    ]  # fmt: skip
    config = ExperimentConfig("x", "gsm8k", ["core", "gcop-supervised", "exectune-sft",
                                             "exectune-as"], ["c/x"], seeds=[0, 1],
                              contrasts=[["exectune-sft", "core"]])  # fmt: skip
    results = aggregate(config, cells, ["0", "1", "2", "3"])
    found = {c["name"]: c for c in results["contrasts"]}
    assert list(found) == ["acceptance filter (SFT)", "SFT over AS", "exectune-sft vs core"]
    fil = found["acceptance filter (SFT)"]
    assert (fil["new"], fil["old"], fil["seeds"], fil["n"]) == (
        "exectune-sft",
        "gcop-supervised",
        2,
        4,
    )
    assert [(m["gained"], m["lost"]) for m in fil["mcnemar"]] == [(3, 0), (0, 1)]
    # per problem, new - old averaged over the 2 seeds: 0.5, 0, 0.5, 0
    assert fil["bootstrap"]["difference"] == pytest.approx(0.25)
    stage = found["SFT over AS"]  # exectune-as has seed 0 only: one pair, not two
    assert stage["seeds"] == 1 and [(m["gained"], m["lost"]) for m in stage["mcnemar"]] == [(3, 0)]
    assert [(m["gained"], m["lost"]) for m in found["exectune-sft vs core"]["mcnemar"]] == [
        (2, 0), (0, 0)]  # fmt: skip
    table = markdown(results, "x.png")
    assert "| acceptance filter (SFT) | `x` | exectune-sft | gcop-supervised | 2 | 4 | +0.250" in (
        table)  # fmt: skip
    assert "3 / 0 (0.250); 0 / 1 (1.000)" in table


def test_a_guided_row_is_split_by_whether_the_core_was_shown_a_plan() -> None:
    alone = {0: {"a": 1.0, "b": 1.0, "c": 0.0, "d": 1.0}, 1: {"a": 1.0, "b": 0.0, "c": 0.0,
                                                             "d": 1.0}}  # fmt: skip
    cells = [
        {"seed": 0, "scores": {"a": 0.0, "b": 1.0, "c": 1.0, "d": 1.0},
         "verdict_by_problem": {"a": "valid", "b": "leak", "c": "repaired", "d": "unparseable"}},
        {"seed": 1, "scores": {"a": 0.0, "b": 0.0, "c": 0.0, "d": 1.0},  # "d": a failed call
         "verdict_by_problem": {"a": "valid", "b": "constraint", "c": "over_budget"}},
        {"seed": 2, "scores": {"a": 1.0}, "verdict_by_problem": {"a": "valid"}},  # no core seed 2
    ]  # fmt: skip
    split = plan_split(cells, alone)
    # shown: seed 0 a, b, c and seed 1 a: the row 2 of 4, the core alone 3 of 4 on them
    # (its part of the row's difference from the core alone: (2 - 3) of all 7 pairs)
    assert split["shown"] == {"n": 4, "accuracy": 0.5, "core_alone": 0.75,
                              "contribution": pytest.approx(-1 / 7)}  # fmt: skip
    # answered alone: seed 0 d and seed 1 b, c: the row 1 of 3, the core alone 1 of 3
    assert split["not_shown"] == {
        "n": 3,
        "accuracy": pytest.approx(1 / 3),
        "core_alone": pytest.approx(1 / 3),
        "contribution": 0.0,
    }
    # the same cells through the report: the markdown row, its difference split in two
    core = [{**cell("core", seed, 0.5, 1e-4), "n": 4, "scores": scores}
            for seed, scores in alone.items()]  # fmt: skip
    guided = [{**cell("exectune-sft", c["seed"], 0.5, 1e-4, False), **c, "guided": True,
               "n": len(c["scores"])} for c in cells[:2]]  # fmt: skip
    config = ExperimentConfig("x", "gsm8k", ["core", "exectune-sft"], ["c/x"], seeds=[0, 1])
    table = markdown(aggregate(config, core + guided, ["a", "b", "c", "d"]), "x.png")
    expected = (
        "| exectune-sft | `x` | 4 | 0.500 | 0.750 | 3 | 0.333 | 0.333 | -0.143: -0.143 + +0.000 |"
    )
    assert expected in table
    assert plan_split([{"seed": 0, "scores": {"a": 1.0}}], alone) is None  # no verdicts kept


def test_dspy_optimizers_on_the_core_alone_score_every_problem(
    loopback_env, fresh_cache, tmp_path: Path
) -> None:
    """MIPROv2 (light) end to end, its proposer prompts in the core's plain adapter."""
    pytest.importorskip("optuna")
    api = loopback_env
    saved = run_remote_grid(tmp_path, ["bootstrap-fewshot", "mipro-light"])
    assert [c["label"] for c in saved["cells"]] == ["bootstrap-fewshot", "mipro-light"] * 2
    systems = [body["messages"][0]["content"] for body in api.model.bodies]
    for scored in saved["cells"]:
        assert scored["failed_calls"] == 0 and len(scored["scores"]) == 4, scored["label"]
        (prompt,) = scored["prompt"].values()  # the prompt it was scored with: the core's
        assert any(prompt["instructions"] in system for system in systems), scored["label"]
        assert all(demo["question"] and demo["answer"] for demo in prompt["demos"])
        if scored["label"] == "bootstrap-fewshot":  # the core fails the "trick" training
            # problems, so DSPy bootstraps no demo of its own: 4 labelled worked solutions
            assert [(d["reasoning"], "augmented" in d) for d in prompt["demos"]] == [
                ("Add the two numbers.", False)
            ] * 4  # fmt: skip
    proposals = [s for s in systems if "generate a new instruction" in s]
    assert proposals and not any("[[ ##" in s for s in proposals)
    assert any(INSTRUCTION in s for s in systems)  # a proposed instruction was tried
    # every demo the core was shown is worked, its answer line written once: the labelled
    # ones are the task's worked solutions, the bootstrapped ones the core's own replies
    replies = [m["content"] for body in api.model.bodies for m in body["messages"][1:-1]
               if m["role"] == "assistant"]  # fmt: skip
    assert replies and all(
        [line.startswith("Answer: ") for line in reply.splitlines()] == [False, True]
        for reply in replies
    ), replies
    assert any(reply.startswith("Add the two numbers.") for reply in replies)  # core_demo's

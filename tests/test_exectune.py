"""ExecTune end to end: a tiny local guide, a loopback core and teacher, all three stages."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import dspy
import pytest

from gcop.errors import GcopError
from gcop.local import MODELS
from gcop.optimizers.exectune import (
    ExecTune,
    OutputDirConflictError,
    _few_shot,
    demo_block,
    versus_core,
)
from gcop.optimizers.rl import RLStageConfig
from gcop.optimizers.sampling import Attempt, SamplingConfig
from gcop.optimizers.sft import SFTStageConfig
from gcop.program import Core, GCoP, Guide
from gcop.programs.math import MathPlan, gsm8k_metric
from tests.test_program import examples, is_guide_prompt, lm


def optimizer(api, output_dir: Path, **kwargs) -> ExecTune:
    return ExecTune(
        lm(api), gsm8k_metric,
        sampling=SamplingConfig(candidates=2, num_threads=4),
        sft=SFTStageConfig(epochs=2, per_device_batch_size=4, logging_steps=1, save_steps=2),
        rl=RLStageConfig(max_steps=2, num_generations=2, per_device_batch_size=4,
                         max_completion_length=16, logging_steps=1, save_steps=1),
        output_dir=output_dir, exec_samples=2, **kwargs,
    )  # fmt: skip


def program(api, tiny_model: str) -> GCoP:
    return GCoP(Guide(MathPlan, f"local/{tiny_model}", max_tokens=16), Core(lm(api)))


def test_as_stage_seeds_draw_disjoint_demo_blocks() -> None:
    trainset = examples(7)
    accepted = [Attempt(example_id=str(e.id), sample=0, verdict="ok", accepted=True,
                        strategy={"steps": [f"Add the numbers of problem {e.id}."]})
                for e in trainset]  # fmt: skip
    blocks = [[a.example_id for a in demo_block(accepted, 3, seed)] for seed in range(3)]
    assert blocks[0] == [a.example_id for a in accepted[:3]]  # seed 0: the first three
    assert not set(blocks[0]) & set(blocks[1])  # seeds 0 and 1 share no demo
    assert blocks[2] == [accepted[6].example_id, *blocks[0][:2]]  # wraps round a short list
    assert demo_block([], 3, 1) == [] and len(demo_block(accepted[:2], 3, 5)) == 2

    guide = _few_shot(Guide(MathPlan, "openai/unused"), trainset, accepted, shots=3, seed=1)
    shown = [demo.question for demo in guide.predict.demos]
    assert shown == [e.question for e in trainset[3:6]]
    assert guide.predict.demos[0].strategy.steps == [
        f"Add the numbers of problem {trainset[3].id}."
    ]


def test_the_report_says_when_no_stage_beats_the_core_alone() -> None:
    def row(accuracy: float, cost: float) -> dict:
        return {"accuracy": {"estimate": accuracy}, "cost_per_query": {"estimate": cost}, "n": 50}

    dev = {"core": row(0.42, 2e-4), "sample": row(0.50, 3e-4), "sft": row(0.30, 1e-4)}
    above = versus_core(dev, "sample")
    assert above["verdict"] == "above" and above["cost_ratio"] == pytest.approx(1.5)
    assert "scores above the core alone on the valset (n=50): 0.500 against 0.420 at 1.50x" in (
        above["message"])  # fmt: skip
    below = versus_core(dev, "sft")
    assert below["verdict"] == "below" and "the core alone (gcop.CoreOnly) is the better" in (
        below["message"])  # fmt: skip
    assert versus_core({**dev, "rl": row(0.42, 4e-4)}, "rl")["verdict"] == "level"
    assert versus_core({"sft": row(0.3, 1e-4)}, "sft") is None  # no core row: nothing to say


def test_three_stage_compile_is_complete_cached_and_resumable(
    api, fresh_cache, tiny_model: str, tmp_path: Path, monkeypatch
) -> None:
    trainset, valset = examples(4, trick=True), examples(2)
    out = tmp_path / "run"
    original = program(api, tiny_model)

    # interrupted after stage 1 ...
    optimizer(api, out, stages=("sample",)).compile(original, trainset, valset)
    assert (out / "sample" / "accepted.jsonl").exists() and not (out / "sft").exists()
    core_calls = api.model.requests

    # ... resumes: stage 1 is read back, no core call is repeated
    tuner = optimizer(api, out)
    compiled = tuner.compile(original, trainset, valset)
    assert original.guide.lm.model == f"local/{tiny_model}"  # the input is never mutated
    for artifact in ("sample/summary.json", "sft/adapter/adapter_config.json",
                     "sft/train_log.json", "rl/adapter/adapter_config.json", "rl/train_log.json",
                     "rl/reward_log.json", "report.json", "report.png", "config.json"):  # fmt: skip
        assert (out / artifact).exists(), artifact
    report = json.loads((out / "report.json").read_text())
    assert report["stages"]["sample"]["acceptance_rate"] == 1.0
    assert set(report["dev"]) == {"core", "untrained", "sample", "sft", "rl"}
    assert sum(report["dev"]["sft"]["verdicts"].values()) == len(valset)
    stage_walls = {key: report["wall_seconds"][key] for key in ("sample", "sft", "rl")}
    assert all(seconds > 0 for seconds in stage_walls.values())
    assert {"valid", "leak", "success", "harm", "cost", "reward"} <= set(
        report["stages"]["rl"]["reward"][0]
    )
    assert compiled is tuner.stage_programs[report["best_stage"]]  # the best on the valset
    versus = report["versus_core"]  # the user learns whether the guide helps this core at all
    assert versus["stage"] == report["best_stage"] and versus["verdict"] in ("above", "level",
                                                                          "below")  # fmt: skip
    assert versus["core_accuracy"] == report["dev"]["core"]["accuracy"]["estimate"]
    assert not [m for m in MODELS.engines() if str(out) in m]  # its scored stages were released
    compiled = tuner.stage_programs["rl"]
    assert "?adapter=" in compiled.guide.lm.model and str(out / "rl") in compiled.guide.lm.model
    prediction = compiled(question="What is 2 plus 2?")
    assert prediction.answer == "4"
    new_bodies = api.model.bodies[core_calls:]
    assert not [b for b in new_bodies if is_guide_prompt(b)]  # no teacher call: stage 1 read back
    assert report["best_stage"] in report["dev"]
    for stage in ("untrained", "sample", "sft", "rl"):
        assert report["dev"][stage]["guide_averaged_executability"]["samples"] == 2
        assert set(report["dev"][stage]["utility"]) == {"0.0", "1000.0", "10000.0"}

    # a second identical compile makes zero model calls
    served = api.model.requests
    optimizer(api, out).compile(original, trainset, valset)
    assert api.model.requests == served
    rerun = json.loads((out / "report.json").read_text())
    assert {key: rerun["wall_seconds"][key] for key in stage_walls} == stage_walls  # kept

    # the compiled program saves and loads; the key is not saved, the environment gives it
    compiled.save(tmp_path / "saved")
    assert "sk-test" not in (tmp_path / "saved" / "program.json").read_text()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-from-env")
    loaded = GCoP.load(tmp_path / "saved")
    assert (tmp_path / "saved" / "guide_adapter" / "adapter_config.json").exists()
    assert loaded(question="What is 2 plus 2?").answer == "4"
    assert api.model.requests == served  # same prompts: all cached


def test_rl_alone_continues_from_the_sft_adapter_an_earlier_run_left(
    api, tiny_model: str, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    out, trainset = tmp_path / "run", examples(4, trick=True)
    optimizer(api, out, stages=("sample", "sft")).compile(program(api, tiny_model), trainset)
    assert not (out / "rl").exists()

    compiled = optimizer(api, out, stages=("rl",)).compile(program(api, tiny_model), trainset)
    assert str(out / "rl" / "adapter") in compiled.guide.lm.model
    sft = load_file(out / "sft" / "adapter" / "adapter_model.safetensors")
    rl = load_file(out / "rl" / "adapter" / "adapter_model.safetensors")
    lora_b = [name for name in sft if "lora_B" in name]
    assert lora_b and set(rl) == set(sft)
    # a fresh LoRA starts with B = 0; two small RL steps from the SFT adapter stay near it
    sft_norm = sum(float(sft[n].norm()) for n in lora_b)
    moved = sum(float((rl[n] - sft[n]).norm()) for n in lora_b)
    assert sft_norm > 0 and 0 < moved < 0.1 * sft_norm  # trained, from the SFT weights
    rewards = json.loads((out / "rl" / "reward_log.json").read_text())
    assert [row["step"] for row in rewards] == [1, 2]


def test_bad_input_fails_before_any_call(api, fresh_cache, tiny_model: str, tmp_path) -> None:
    tuner = optimizer(api, tmp_path / "run")
    with pytest.raises(GcopError, match="trainset is empty"):
        tuner.compile(program(api, tiny_model), [])
    with pytest.raises(GcopError, match=r"lacks the input field\(s\) \['question'\]"):
        tuner.compile(program(api, tiny_model), [dspy.Example(q="x").with_inputs("q")])
    remote_guide = GCoP(Guide(MathPlan, lm(api)), Core(lm(api)))
    with pytest.raises(GcopError, match="cannot be fine-tuned"):
        tuner.compile(remote_guide, examples(1))
    with pytest.raises(GcopError, match="needs metric"):
        ExecTune(lm(api), output_dir=tmp_path).compile(program(api, tiny_model), examples(1))
    assert api.model.requests == 0
    optimizer(api, tmp_path / "other", stages=("sample",)).compile(
        program(api, tiny_model), examples(1)
    )
    changed = optimizer(api, tmp_path / "other", stages=("sample",), cost_weight=5.0)
    with pytest.raises(OutputDirConflictError, match="different configuration"):
        changed.compile(program(api, tiny_model), examples(1))
    faster = optimizer(api, tmp_path / "other", stages=("sample",))
    faster.config.sampling.num_threads = 1  # how fast, not what: the same compile resumes
    faster.config.sft.micro_batch_size = None  # how much memory, not what: the same
    faster.compile(program(api, tiny_model), examples(1))
    bigger = optimizer(api, tmp_path / "other", stages=("sample",))
    bigger.config.sft.per_device_batch_size = 16  # a different update: a different compile
    with pytest.raises(OutputDirConflictError, match="different configuration"):
        bigger.compile(program(api, tiny_model), examples(1))


KILL_POINTS = {
    # stage -> (what to wait for before SIGKILL, how slow the API is meanwhile)
    "sample": (lambda out, api: api.model.requests >= 6, 0.3),
    "sft": (lambda out, api: (out / "sft" / "checkpoints" / "checkpoint-1").exists(), 0.0),
    "rl": (lambda out, api: (out / "rl" / "checkpoints" / "checkpoint-2").exists(), 0.0),
}


@pytest.mark.parametrize("stage", list(KILL_POINTS))
def test_compile_killed_mid_stage_resumes_without_repeating_calls(
    api, tiny_model: str, tmp_path: Path, stage: str
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    ready, api.model.delay = KILL_POINTS[stage]
    out, cache = tmp_path / "run", tmp_path / "calls"
    args = [sys.executable, "-m", "tests.compile_driver", api.base_url, tiny_model, str(out),
            str(cache), "8"]  # fmt: skip
    root = Path(__file__).resolve().parent.parent
    victim = subprocess.Popen(args, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not ready(out, api) and time.monotonic() < deadline:
        assert victim.poll() is None, "the compile ended before it could be killed"
        time.sleep(0.05)
    _quiesce(api, cache)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (out / stage / ("summary.json" if stage == "sample" else "adapter")).exists()
    api.model.delay = 0.0
    served_before = len(api.model.bodies)
    answered_before = Counter(_identity(b) for b in api.model.answered)

    resumed = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "compiled" in resumed.stdout
    for artifact in ("sample/accepted.jsonl", "sft/adapter/adapter_config.json",
                     "rl/adapter/adapter_config.json", "report.json"):  # fmt: skip
        assert (out / artifact).exists(), artifact
    log = json.loads((out / "rl" / "train_log.json").read_text())
    assert max(row.get("step", 0) for row in log) == 8
    rewards = json.loads((out / "rl" / "reward_log.json").read_text())
    assert [row["step"] for row in rewards] == list(range(1, 9))  # every step, once
    asked_after = Counter(_identity(b) for b in api.model.bodies[served_before:])
    # a greedy call is answered once; a teacher prompt is sampled `candidates` (2) times
    repeated = {
        key: (answered_before[key], n)
        for key, n in asked_after.items()
        if answered_before[key] + n > (2 if json.loads(key)[1] else 1)
    }
    assert repeated == {}  # no answered call was made again


def _quiesce(api, cache_dir: Path) -> None:
    """Hold new answers and let the answers already sent reach the cache before the kill.

    The cache write is the commit point: an answer the server sent but the victim had not
    yet stored is lost with it, and rightly asked again; without this pause a SIGKILL that
    lands in that window of a few milliseconds made the test flaky.
    """
    import time

    import diskcache

    if api.model.delay or api.model.in_flight:  # (training stages run without the API)
        held, api.model.delay = api.model.delay, 5.0
        time.sleep(held + 0.05)  # requests already past the old delay answer meanwhile
    with diskcache.Cache(str(cache_dir)) as stored:
        deadline = time.monotonic() + 10
        while len(stored) < len(api.model.answered) and time.monotonic() < deadline:
            time.sleep(0.05)


def _identity(body: dict) -> str:
    return json.dumps([body["messages"], body.get("temperature")])


def test_training_stages_run_as_several_processes(api, tiny_model: str, tmp_path: Path) -> None:
    """Stage 1 once, then SFT and RL as two DDP processes (CPU, gloo) started by torchrun,
    the launcher `accelerate launch --multi_gpu` itself runs: TRL's multi-process path."""
    import subprocess
    import sys

    out, cache = tmp_path / "run", tmp_path / "calls"
    root = Path(__file__).resolve().parent.parent
    driver = ["-m", "tests.compile_driver", api.base_url, tiny_model, str(out), str(cache), "2"]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    run = lambda *args: subprocess.run(  # noqa: E731
        [*args], cwd=root, capture_output=True, text=True, timeout=600
    )
    too_early = run(*launch, *driver, "sft,rl")
    assert too_early.returncode != 0 and "run it once first" in too_early.stderr

    single = run(sys.executable, *driver, "sample")
    assert single.returncode == 0, single.stderr[-2000:]
    launched = run(*launch, *driver, "sft,rl")
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert launched.stdout.count("compiled") == 2  # both ranks finished
    for stage in ("sft", "rl"):
        assert (out / stage / "adapter" / "adapter_config.json").exists()
    log = json.loads((out / "rl" / "train_log.json").read_text())
    assert max(row.get("step", 0) for row in log) == 2
    assert not list(out.rglob("*.partial"))  # every atomic write finished, none collided

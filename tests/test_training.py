"""ExecTune stages 2 and 3 on the CPU: LoRA SFT and GRPO of a tiny real chat model."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import litellm
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer
from trl import SFTTrainer

import gcop.local.provider  # noqa: F401  (registers the local/ provider with LiteLLM)
from gcop.errors import ConfigError
from gcop.local.precision import native_bf16, trains_in_bf16
from gcop.local.provider import prompt_ids
from gcop.optimizers.rl import RLStageConfig, reinforce
from gcop.optimizers.sft import SFTStageConfig, as_prompt_completion, finetune, load_base

REPLY = '[[ ## strategy ## ]]\n{"steps": ["a", "b"]}\n\n[[ ## completed ## ]]\n'
SYSTEM = {"role": "system", "content": "Write a plan. Reason step by step."}
FAST_SFT = dict(per_device_batch_size=2, learning_rate=1e-2, lora_dropout=0.0, logging_steps=1)
FAST_RL = dict(num_generations=2, per_device_batch_size=4, max_completion_length=12,
               learning_rate=1e-3, logging_steps=1, save_steps=1)  # fmt: skip


def prompt(i: int) -> list[dict[str, str]]:
    return [SYSTEM, {"role": "user", "content": f"What is {i} plus {i + 1}?"}]


EXAMPLES = [{"messages": [*prompt(i), {"role": "assistant", "content": REPLY}]} for i in range(6)]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """A 2-layer model trains faster on one thread than on contended cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sft_run(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(stage folder, adapter) of one SFT run, shared by the tests that only read it."""
    output_dir = tmp_path_factory.mktemp("sft")
    adapter = finetune(tiny_model, EXAMPLES, SFTStageConfig(epochs=5, **FAST_SFT), output_dir)
    return output_dir, adapter


def losses(output_dir: Path) -> list[float]:
    return [row["loss"] for row in json.loads((output_dir / "train_log.json").read_text())
            if "loss" in row]  # fmt: skip


def test_examples_become_prompt_completion_pairs() -> None:
    pair = as_prompt_completion(EXAMPLES[0])
    assert pair["prompt"] == prompt(0)
    assert pair["completion"] == [{"role": "assistant", "content": REPLY}]
    with pytest.raises(ValueError, match="assistant"):
        as_prompt_completion({"messages": prompt(0)})


def test_sft_writes_adapter_log_and_config(sft_run: tuple[Path, Path]) -> None:
    output_dir, adapter = sft_run
    assert adapter == output_dir / "adapter"
    assert (adapter / "adapter_config.json").exists()
    assert (adapter / "adapter_model.safetensors").exists()
    config = json.loads((output_dir / "config.json").read_text())
    assert config == asdict(SFTStageConfig(epochs=5, **FAST_SFT))
    loss = losses(output_dir)
    assert len(loss) == 15  # 6 examples / batch 2 * 5 epochs, logged every step
    assert loss[-1] < loss[0] - 0.1
    assert not list(output_dir.glob("*.partial"))


def test_sft_adapter_serves_through_the_local_provider(
    tiny_model: str, sft_run: tuple[Path, Path]
) -> None:
    def reply(model: str) -> str:
        response = litellm.completion(model=model, messages=prompt(9), max_tokens=20, temperature=0)
        return response.choices[0].message.content

    tuned = reply(f"local/{tiny_model}?adapter={sft_run[1]}")
    assert tuned and tuned != reply(f"local/{tiny_model}")


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_sft_trains_in_the_asked_precision_and_saves_an_fp32_adapter(
    tiny_model: str, tmp_path: Path, precision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = {}
    real_init = SFTTrainer.__init__

    def spy(self, model, args, **kwargs):  # what the trainer is handed, not a replacement
        seen["base"] = next(p.dtype for n, p in model.named_parameters() if "lora" not in n)
        seen["bf16"] = args.bf16
        real_init(self, model=model, args=args, **kwargs)

    monkeypatch.setattr(SFTTrainer, "__init__", spy)
    config = SFTStageConfig(epochs=3, precision=precision, **FAST_SFT)
    adapter = finetune(tiny_model, EXAMPLES, config, tmp_path)
    bf16 = precision == "bf16"
    assert seen == {"base": torch.bfloat16 if bf16 else torch.float32, "bf16": bf16}
    loss = losses(tmp_path)
    assert loss[-1] < loss[0] - 0.1  # it learns in either precision
    weights = load_file(adapter / "adapter_model.safetensors")
    assert weights and {w.dtype for w in weights.values()} == {torch.float32}


def test_micro_batches_give_the_whole_batch_update(tiny_model: str, tmp_path: Path) -> None:
    """Replies of different lengths, so a per-micro-batch mean would weigh tokens unequally:
    the Trainer must weigh each micro-batch by its share of the batch's target tokens."""
    examples = [{"messages": [*prompt(i), {"role": "assistant", "content": REPLY * (1 + i % 3)}]}
                for i in range(8)]  # fmt: skip
    logs = {}
    for micro in (None, 1):
        config = SFTStageConfig(**{**FAST_SFT, "per_device_batch_size": 4}, max_steps=2,
                                micro_batch_size=micro, precision="fp32")  # fmt: skip
        assert config.forward_batch == ((4, 1) if micro is None else (1, 4))
        finetune(tiny_model, examples, config, tmp_path / str(micro))
        rows = json.loads((tmp_path / str(micro) / "train_log.json").read_text())
        logs[micro] = [v for r in rows if "loss" in r for v in (r["loss"], r["grad_norm"])]
    assert len(logs[None]) == 4  # loss and gradient norm of 2 steps
    assert logs[1] == pytest.approx(logs[None], rel=1e-4)


def test_micro_batches_divide_the_batch_and_bad_sizes_are_refused() -> None:
    def split(**options) -> tuple[int, int]:
        return SFTStageConfig(**options).forward_batch

    assert split() == (2, 4)  # the default: batch 8 in micro-batches of 2
    assert split(micro_batch_size=None) == (8, 1)
    assert split(per_device_batch_size=6, micro_batch_size=4) == (3, 2)  # equal parts
    assert split(per_device_batch_size=1) == (1, 1)
    assert split(per_device_batch_size=4, gradient_accumulation_steps=2) == (2, 4)
    with pytest.raises(ValueError, match="at least 1 example"):
        SFTStageConfig(micro_batch_size=0)


FRAGMENTED_HEAP = """
from gcop.optimizers.base import release_memory

def rss_mib():
    return next(int(line.split()[1]) // 1024 for line in open("/proc/self/status")
                if line.startswith("VmRSS"))

blocks = [bytes(1024) + bytes([i % 256]) for i in range(400_000)]  # ~400 MiB on the heap
kept = blocks[::64]  # one block in 64 stays: the heap cannot shrink from its top
del blocks
freed = rss_mib()
release_memory()
print(freed, rss_mib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_memory_gives_freed_heap_back_to_the_system() -> None:
    """What a long grid process keeps after a training stage: freed but not returned."""
    run = subprocess.run([sys.executable, "-c", FRAGMENTED_HEAP], capture_output=True,
                         text=True, timeout=120, check=True)  # fmt: skip
    freed, released = map(int, run.stdout.split())
    assert freed - released > 100  # MiB returned (about 190 of 400 here)


def test_precision_auto_follows_the_hardware_and_typos_are_refused() -> None:
    assert trains_in_bf16("auto") is native_bf16()
    assert trains_in_bf16("bf16") and not trains_in_bf16("fp32")
    for config in (SFTStageConfig, RLStageConfig):
        with pytest.raises(ConfigError, match="'auto', 'bf16', 'fp32'"):
            config(precision="fp16")


def test_a_finished_stage_returns_without_training(
    tiny_model: str, sft_run: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_training(*args, **kwargs):
        raise AssertionError("the stage is done: nothing may train")

    monkeypatch.setattr("trl.SFTTrainer", no_training)
    output_dir, adapter = sft_run
    assert finetune(tiny_model, EXAMPLES, SFTStageConfig(), output_dir) == adapter


def test_a_killed_run_resumes_from_its_last_checkpoint(
    tiny_model: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = SFTStageConfig(max_steps=2, save_steps=1, keep_checkpoints=None, **FAST_SFT)
    finetune(tiny_model, EXAMPLES, config, tmp_path)
    checkpoints = tmp_path / "checkpoints"
    # Killed after checkpoint-2: no adapter yet. checkpoint-1 goes too, so that a run
    # started from scratch (which would write it again) cannot pass for a resumed one.
    shutil.rmtree(tmp_path / "adapter")
    shutil.rmtree(checkpoints / "checkpoint-1")
    config.max_steps = 4
    with caplog.at_level(logging.INFO, logger="gcop.optimizers.sft"):
        finetune(tiny_model, EXAMPLES, config, tmp_path)
    assert "checkpoint-2" in caplog.text
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == [
        "checkpoint-2", "checkpoint-3", "checkpoint-4"
    ]  # fmt: skip
    state = json.loads((checkpoints / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    assert len(losses(tmp_path)) == 4  # the log carries the first run's steps over
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()


def test_grpo_prompts_use_the_providers_chat_template(tiny_model: str, tmp_path: Path) -> None:
    """GRPO renders prompts with `apply_chat_template(conversation=batch, ...)`; the provider
    with `prompt_ids`. They must agree, also for a model without a chat template."""
    plain = shutil.copytree(tiny_model, tmp_path / "plain")
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    settings = json.loads((plain / "tokenizer_config.json").read_text())
    settings.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(settings))
    for folder in (tiny_model, plain):
        _, tokenizer = load_base(folder)
        trl_ids = tokenizer.apply_chat_template(
            conversation=[prompt(3)], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"][0]
        assert list(trl_ids) == prompt_ids(AutoTokenizer.from_pretrained(folder), prompt(3))
        target = tokenizer.apply_chat_template(EXAMPLES[0]["messages"], tokenize=False)
        assert target.endswith(REPLY + tokenizer.eos_token)  # SFT teaches the guide to stop


def test_grpo_from_the_sft_adapter_rewards_with_extra_columns(
    tiny_model: str, sft_run: tuple[Path, Path], tmp_path: Path
) -> None:
    seen: list[int] = []

    def brevity(prompts, completions, example_index, **kwargs) -> list[float]:
        seen.extend(example_index)
        assert len(example_index) == len(completions) == len(prompts)
        return [-float(len(c[0]["content"])) for c in completions]

    rows = [{"prompt": prompt(i), "example_index": i} for i in range(4)]
    config = RLStageConfig(max_steps=2, **FAST_RL)
    adapter = reinforce(tiny_model, sft_run[1], rows, [brevity], config, tmp_path)
    assert (adapter / "adapter_model.safetensors").exists()
    assert not (adapter / "ref").exists()  # the frozen KL reference is not the result
    assert len(seen) == 2 * 4 and set(seen) <= set(range(4))
    log = json.loads((tmp_path / "train_log.json").read_text())
    steps = [row for row in log if "reward" in row]
    assert len(steps) == 2 and all("rewards/brevity/mean" in row and "kl" in row for row in steps)
    response = litellm.completion(model=f"local/{tiny_model}?adapter={adapter}",
                                  messages=prompt(1), max_tokens=8)  # fmt: skip
    assert response.choices[0].message.content is not None


def test_grpo_without_an_adapter_starts_a_fresh_lora(tiny_model: str, tmp_path: Path) -> None:
    rows = [{"prompt": prompt(i)} for i in range(2)]
    config = RLStageConfig(max_steps=1, beta=0.0, **FAST_RL)
    adapter = reinforce(tiny_model, None, rows, [lambda completions, **_: [1.0] * len(completions)],
                        config, tmp_path)  # fmt: skip
    settings = json.loads((adapter / "adapter_config.json").read_text())
    assert settings["r"] == config.lora_r
    assert (tmp_path / "checkpoints" / "checkpoint-1").is_dir()

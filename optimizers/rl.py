"""Stage 3 of ExecTune: structure-aware RL of the guide with GRPO, from the SFT adapter.

The guide samples a group of strategies per prompt; reward functions (our executability
reward: does the strategy parse, fit its type, and make the core succeed?) score each one,
and GRPO moves the adapter towards the better members of each group. Prompts are rendered
by the tokenizer's chat template, the very call the `local/` provider makes at inference,
so the policy is trained on the prompts it will be served. Same folder layout, resume and
atomic-write rules as stage 2 (:mod:`gcop.optimizers.sft`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gcop.atomic import write_json
from gcop.errors import ConfigError
from gcop.local.precision import check_precision, precision_field, trains_in_bf16
from gcop.optimizers.base import ADAPTER, StageDir, release_memory
from gcop.optimizers.sft import last_checkpoint, load_base, save_stage, trainer_args

RewardFunction = Callable[..., list[float | None]]
"""TRL's contract: `reward(prompts, completions, **columns) -> one float per completion`."""


@dataclass
class RLStageConfig:
    """Every knob of stage 3, with its default."""

    max_steps: int = field(default=200, metadata={"help": "optimizer steps"})
    learning_rate: float = field(default=1e-5, metadata={"help": "peak AdamW learning rate"})
    num_generations: int = field(
        default=4, metadata={"help": "strategies sampled per prompt (the GRPO group)"}
    )
    per_device_batch_size: int = field(
        default=8, metadata={"help": "completions per forward pass; a multiple of num_generations"}
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "forward passes per optimizer step"}
    )
    max_completion_length: int = field(
        default=256, metadata={"help": "tokens per sampled strategy (the guide's max_tokens)"}
    )
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    beta: float = field(
        default=0.04,
        metadata={"help": "KL weight towards the starting (SFT) adapter; 0 skips that pass"},
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank when no SFT adapter is given"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scale numerator (scale = a/r)"})
    lora_dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA input"})
    target_modules: str | list[str] = field(
        default="all-linear", metadata={"help": "modules that get LoRA weights"}
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "recompute activations: less memory, ~20% slower"}
    )
    logging_steps: int = field(default=10, metadata={"help": "optimizer steps between log rows"})
    save_steps: int = field(default=50, metadata={"help": "optimizer steps between checkpoints"})
    keep_checkpoints: int | None = field(
        default=2, metadata={"help": "newest checkpoints kept on disk (None: all)"}
    )
    seed: int = field(default=0, metadata={"help": "seed for sampling, LoRA init, data order"})
    precision: str = precision_field()
    use_vllm: bool = field(
        default=False,
        metadata={"help": "generate the GRPO groups with vLLM (CUDA only, `pip install vllm`)"},
    )
    vllm_mode: str = field(
        default="colocate",
        metadata={"help": "'colocate': vLLM runs in the trainer on its GPU; 'server': a "
                  "separate `trl vllm-serve` process"},
    )  # fmt: skip
    vllm_gpu_memory_utilization: float = field(
        default=0.3, metadata={"help": "GPU memory share vLLM may take in colocate mode"}
    )

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if self.vllm_mode not in ("colocate", "server"):
            raise ConfigError(
                f"vllm_mode={self.vllm_mode!r} is not a vLLM mode; use 'colocate' or 'server'"
            )
        if self.per_device_batch_size % self.num_generations:
            raise ConfigError(
                f"per_device_batch_size={self.per_device_batch_size} is not a multiple of "
                f"num_generations={self.num_generations}: each prompt's group of strategies "
                "must fit in one batch; use a multiple"
            )


def reinforce(
    base_model: str | Path,
    adapter_dir: Path | None,
    prompts: list[dict[str, Any]],
    reward_funcs: list[RewardFunction],
    config: RLStageConfig,
    output_dir: Path,
) -> Path:
    """Train the guide's adapter with GRPO on `prompts`; return `output_dir/adapter`.

    `prompts` rows hold a "prompt" (the guide's chat messages) and any extra columns, which
    reach each reward function as keyword arguments (one value per completion). Starts from
    the SFT adapter `adapter_dir` when given (kept as the KL reference), else a fresh LoRA.
    """
    from datasets import Dataset
    from peft import LoraConfig, PeftModel
    from trl import GRPOTrainer

    output_dir = Path(output_dir)
    stage = StageDir(output_dir, ADAPTER)
    if stage.done:
        return stage.marker_path
    if not prompts or any("prompt" not in row for row in prompts):
        raise ValueError("every RL row needs a 'prompt' (the guide's chat messages)")
    write_json(output_dir / "config.json", asdict(config))
    model, tokenizer = load_base(base_model, bf16=trains_in_bf16(config.precision))
    lora = None
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)
    else:
        lora = LoraConfig(
            r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
            target_modules=config.target_modules, task_type="CAUSAL_LM",
        )  # fmt: skip
    args = grpo_args(config, output_dir)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=Dataset.from_list(prompts),
        processing_class=tokenizer,
        peft_config=lora,
    )
    trainer.train(resume_from_checkpoint=last_checkpoint(output_dir))
    adapter = save_stage(trainer, output_dir)
    del trainer, model
    release_memory()
    return adapter


def grpo_args(config: RLStageConfig, output_dir: Path):
    """TRL's GRPOConfig for stage 3; vLLM generation only when asked for, on CUDA."""
    from trl import GRPOConfig

    if config.use_vllm:
        _check_vllm()
    return GRPOConfig(
        **trainer_args(config, output_dir),
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        beta=config.beta,
        use_vllm=config.use_vllm,
        vllm_mode=config.vllm_mode,
        vllm_gpu_memory_utilization=config.vllm_gpu_memory_utilization,
    )


def _check_vllm() -> None:
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        raise ConfigError("use_vllm=True needs a CUDA GPU; on a CPU leave it off")
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError("use_vllm=True needs vLLM: `pip install vllm` (a CUDA build)")

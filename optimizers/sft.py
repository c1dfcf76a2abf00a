"""Stage 2 of ExecTune: LoRA supervised fine-tuning of the guide on accepted strategies.

Each example is the guide's exact inference prompt with an accepted strategy as the reply
(:meth:`gcop.program.Guide.format_training_example`). Loss is on the reply only: the guide
learns to write strategies, not to reproduce its prompt. A stage is a folder: `config.json`,
`checkpoints/` (a killed run resumes from the last one), `train_log.json` and `adapter/`,
written last and atomically, so that an existing `adapter/` means the stage is done.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gcop.atomic import atomic_dir, write_json
from gcop.local.precision import check_precision, precision_field, trains_in_bf16
from gcop.local.registry import resolve
from gcop.local.spec import LocalModelSpec
from gcop.optimizers.base import ADAPTER, StageDir, release_memory

log = logging.getLogger(__name__)

PLAIN_CHAT_TEMPLATE = (  # newlines as string literals: chat templates trim those after a tag
    "{% for m in messages %}{% if not loop.first %}{{ '\\n\\n' }}{% endif %}"
    "{{ m['role'] + ': ' + m['content'] }}"
    "{% if loop.last and m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '\\n\\nassistant:' }}{% endif %}"
)
"""The text the `local/` provider writes for a tokenizer without a chat template; a final
assistant reply (a training target) ends with the end-of-sequence token, so the guide learns
to stop."""


@dataclass
class SFTStageConfig:
    """Every knob of stage 2, with its default."""

    epochs: float = field(default=3.0, metadata={"help": "passes over the accepted strategies"})
    max_steps: int = field(
        default=-1, metadata={"help": "stop after this many optimizer steps (-1: use epochs)"}
    )
    learning_rate: float = field(default=2e-4, metadata={"help": "peak AdamW learning rate"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scale numerator (scale = a/r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    target_modules: str | list[str] = field(
        default="all-linear", metadata={"help": "modules that get LoRA weights"}
    )
    per_device_batch_size: int = field(
        default=8, metadata={"help": "examples per optimizer step on each device"}
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "per-device batches per optimizer step"}
    )
    micro_batch_size: int | None = field(
        default=2,
        metadata={"help": "at most this many examples per forward pass: a batch runs as "
                  "micro-batches whose gradients add up to the batch's, the same update in "
                  "less memory (the batch size or more, or None: the whole batch at once)",
                  "speed": True},
    )  # fmt: skip
    max_length: int = field(
        default=2048, metadata={"help": "tokens per example (prompt + strategy), cut beyond"}
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "recompute activations: less memory, ~20% slower"}
    )
    logging_steps: int = field(default=10, metadata={"help": "optimizer steps between log rows"})
    save_steps: int = field(default=100, metadata={"help": "optimizer steps between checkpoints"})
    keep_checkpoints: int | None = field(
        default=2, metadata={"help": "newest checkpoints kept on disk (None: all)"}
    )
    seed: int = field(default=0, metadata={"help": "seed for LoRA init and data order"})
    precision: str = precision_field()

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError(
                f"micro_batch_size={self.micro_batch_size}: give at least 1 example per "
                "forward pass, or None for the whole per-device batch at once"
            )

    @property
    def forward_batch(self) -> tuple[int, int]:
        """(examples per forward pass, forward passes per optimizer step) as the Trainer
        is given them: the per-device batch cut into equal micro-batches of at most
        `micro_batch_size` (the largest divisor of the batch not above it).

        Why a split and not a smaller batch: on the CPU an epoch of long plans (MATH-500)
        in batches of 8 was killed by the kernel at 24.3 GB; in micro-batches of 2 it peaked
        at 9.2 GB and ran faster (docs/benchmarks.md, "SFT memory on long plans"). The
        Trainer weighs each micro-batch's loss by its share of the batch's target tokens
        (`num_items_in_batch`), so the update is the batch's, to rounding.
        """
        batch = self.per_device_batch_size
        cap = min(self.micro_batch_size or batch, batch)
        micro = max(d for d in range(1, cap + 1) if batch % d == 0)  # equal micro-batches
        return micro, self.gradient_accumulation_steps * (batch // micro)


def finetune(
    base_model: str | Path, examples: list[dict], config: SFTStageConfig, output_dir: Path
) -> Path:
    """Train a LoRA adapter on `examples` (`{"messages": [...]}`); return `output_dir/adapter`.

    Returns at once if the adapter exists; resumes from `output_dir/checkpoints` if a run
    was cut short. Serve the result as `local/<base>?adapter=<returned dir>`.
    """
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    output_dir = Path(output_dir)
    stage = StageDir(output_dir, ADAPTER)
    if stage.done:
        return stage.marker_path
    if not examples:
        raise ValueError("no training examples: stage 1 accepted no strategy")
    write_json(output_dir / "config.json", asdict(config))
    model, tokenizer = load_base(base_model, bf16=trains_in_bf16(config.precision))
    dataset = Dataset.from_list([as_prompt_completion(e) for e in examples])
    shared = trainer_args(config, output_dir)
    micro, accumulation = config.forward_batch  # the batch, in micro-batches
    shared.update(per_device_train_batch_size=micro, gradient_accumulation_steps=accumulation)
    args = SFTConfig(
        **shared,
        num_train_epochs=config.epochs,
        max_length=config.max_length,
        completion_only_loss=True,
    )
    lora = LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=config.target_modules, task_type="CAUSAL_LM",
    )  # fmt: skip
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=lora
    )
    trainer.train(resume_from_checkpoint=last_checkpoint(output_dir))
    adapter = save_stage(trainer, output_dir)
    del trainer, model
    release_memory()
    return adapter


def as_prompt_completion(example: dict[str, Any]) -> dict[str, list]:
    """`{"messages": [..., reply]}` -> TRL's conversational prompt-completion format, so
    that the loss covers the assistant reply and nothing else."""
    messages = example["messages"]
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("a training example must end with the assistant's reply (the strategy)")
    return {"prompt": messages[:-1], "completion": [messages[-1]]}


def load_base(base_model: str | Path, bf16: bool = False) -> tuple[Any, Any]:
    """The base model (its frozen weights in bf16 when training in bf16, else fp32; LoRA
    weights stay fp32, peft's default) and a tokenizer whose chat template renders prompts
    exactly as the `local/` provider does at inference."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve(LocalModelSpec.parse(str(base_model)).model)
    dtype = torch.bfloat16 if bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if not tokenizer.chat_template:  # the provider's plain-text fallback, as a template
        tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    return model, tokenizer


def trainer_args(config: Any, output_dir: Path) -> dict[str, Any]:
    """The TrainingArguments every stage shares: devices, checkpoints, logging, no hub."""
    import torch
    from transformers import TrainingArguments

    # transformers 5 renamed gradient_checkpointing (the old name still works, with a warning)
    checkpointing = "activation_checkpointing"
    if checkpointing not in TrainingArguments.__dataclass_fields__:
        checkpointing = "gradient_checkpointing"
    return {
        checkpointing: config.gradient_checkpointing,
        "output_dir": str(output_dir / "checkpoints"),
        "max_steps": config.max_steps,
        "learning_rate": config.learning_rate,
        "per_device_train_batch_size": config.per_device_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "bf16": trains_in_bf16(config.precision),
        # on CPU say so: only then do processes started by torchrun / accelerate form a
        # process group (gloo) instead of each training alone
        "use_cpu": not torch.cuda.is_available(),
        "dataloader_pin_memory": torch.cuda.is_available(),
        "logging_steps": config.logging_steps,
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": config.keep_checkpoints,
        "seed": config.seed,
        "report_to": "none",
        "push_to_hub": False,
    }


def last_checkpoint(output_dir: Path) -> str | None:
    """The newest *complete* `checkpoints/checkpoint-<step>` to resume from, if any.

    The Trainer writes a checkpoint's files one by one and `trainer_state.json` last, so a
    process killed while saving leaves a folder without it: such a folder is removed, and
    the previous complete checkpoint is used (transformers' `get_last_checkpoint` would
    pick the broken one by its number).
    """
    folder = output_dir / "checkpoints"
    candidates = sorted(
        (p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    ) if folder.is_dir() else []  # fmt: skip
    for checkpoint in reversed(candidates):
        if (checkpoint / "trainer_state.json").exists():
            log.info("resuming %s from %s", output_dir, checkpoint)
            return str(checkpoint)
        log.warning("removing %s: it was cut off while being written", checkpoint)
        shutil.rmtree(checkpoint, ignore_errors=True)
    return None


def save_stage(trainer: Any, output_dir: Path) -> Path:
    """Write `train_log.json`, then `adapter/` (only the trained adapter, not a frozen
    reference copy) by an atomic rename: the adapter's presence marks the stage done."""
    adapter = StageDir(output_dir, ADAPTER).marker_path
    if trainer.accelerator.is_main_process:  # under `accelerate launch`, rank 0 writes
        write_json(output_dir / "train_log.json", trainer.state.log_history)
        with atomic_dir(adapter) as partial:
            trainer.model.save_pretrained(str(partial), selected_adapters=["default"])
    trainer.accelerator.wait_for_everyone()  # the others read it once it is there
    return adapter

"""What the SFT benchmarks share: the options naming a compile's stage-1 rows, and those
rows turned into the guide's exact training examples (as ExecTune's stage 2 builds them)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_sft_row_options(parser: argparse.ArgumentParser) -> None:
    """--accepted, --task, --train, --guide: which rows, for which guide."""
    add = parser.add_argument
    add("--accepted", type=Path, required=True, help="a stage-1 accepted.jsonl")
    add("--task", default="gsm8k")
    add("--train", type=int, default=150, help="the compile's training sample")
    add("--guide", default="local/smollm2-135m-instruct")


def sft_rows(args: argparse.Namespace) -> list[dict]:
    """The accepted strategies of `args.accepted` as the guide's chat training examples."""
    from gcop.bench import select_examples
    from gcop.optimizers.exectune import sft_examples
    from gcop.optimizers.sampling import Attempt
    from gcop.program import Guide
    from gcop.programs import get_task

    task = get_task(args.task)
    train = select_examples(task, "train", args.train, 0)
    accepted = [Attempt(**json.loads(line)) for line in args.accepted.read_text().splitlines()]
    guide = Guide(task.strategy_type, args.guide, max_tokens=task.guide_max_tokens)
    return sft_examples(guide, train, accepted)

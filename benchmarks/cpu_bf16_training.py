"""LoRA SFT in fp32 vs bf16, side by side on this machine: what `precision="auto"` buys.

Trains the guide's stage-2 adapter for a fixed number of optimizer steps on real stage-1
rows (the accepted strategies of a compile, in the guide's exact training format), once per
precision, each in its own process (so each peak RSS is its own), same seed and data order:

    python benchmarks/cpu_bf16_training.py --guide local/smollm2-135m-instruct --steps 6 \
        --accepted runs/headline-cpu/seed-0/sample/accepted.jsonl

Prints a markdown table (seconds per optimizer step by the Trainer's clock, so without
loading; the speed-up; peak RSS; the loss at each step) and writes the rows as JSON to
`--out`. The loss curves show whether bf16 changes what is
learned; the seconds whether it is worth it (on a CPU without native bf16 it is emulated
and slower: `gcop.local.precision.native_bf16` says which this is).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def train_once(args: argparse.Namespace) -> dict:
    """One SFT run at `args.one`'s precision; returns its timing, memory and losses."""
    from gcop.atomic import write_json
    from gcop.bench import select_examples
    from gcop.local.precision import trains_in_bf16
    from gcop.optimizers.exectune import sft_examples
    from gcop.optimizers.sampling import Attempt
    from gcop.optimizers.sft import SFTStageConfig, finetune
    from gcop.program import Guide
    from gcop.programs import get_task

    task = get_task(args.task)
    train = select_examples(task, "train", args.train, 0)
    accepted = [Attempt(**json.loads(line)) for line in args.accepted.read_text().splitlines()]
    guide = Guide(task.strategy_type, args.guide, max_tokens=task.guide_max_tokens)
    examples = sft_examples(guide, train, accepted)
    config = SFTStageConfig(max_steps=args.steps, logging_steps=1, save_steps=10**6,
                            per_device_batch_size=args.batch_size, precision=args.one)  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        finetune(args.guide, examples, config, Path(folder))
        wall = time.perf_counter() - start
        log = json.loads((Path(folder) / "train_log.json").read_text())
    train_s = next(r["train_runtime"] for r in log if "train_runtime" in r)
    row = {
        "precision": args.one,
        "bf16": trains_in_bf16(args.one),
        "steps": args.steps,
        "rows": len(examples),
        "wall_s": round(wall, 1),  # with loading the model and the data
        "s_per_step": round(train_s / args.steps, 2),  # the Trainer's own clock: steps only
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "loss": [round(r["loss"], 4) for r in log if "loss" in r],
    }
    write_json(args.row_out, row)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--accepted", type=Path, required=True, help="a stage-1 accepted.jsonl")
    add("--task", default="gsm8k")
    add("--train", type=int, default=150, help="the compile's training sample")
    add("--guide", default="local/smollm2-135m-instruct")
    add("--steps", type=int, default=6, help="optimizer steps per precision")
    add("--batch-size", type=int, default=8)
    add("--precisions", default="fp32,bf16")
    add("--out", type=Path, help="JSON rows (default: print only)")
    add("--one", help=argparse.SUPPRESS)  # internal: run one precision in this process
    add("--row-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        train_once(args)
        return

    from gcop.atomic import write_json
    from gcop.local.precision import native_bf16

    rows = []
    for precision in args.precisions.split(","):
        with tempfile.TemporaryDirectory() as folder:
            row_out = Path(folder) / "row.json"
            command = [sys.executable, __file__, *sys.argv[1:], "--one", precision,
                       "--row-out", str(row_out)]  # fmt: skip
            subprocess.run(command, check=True)
            rows.append(json.loads(row_out.read_text()))
    base = rows[0]["s_per_step"]
    print(f"\n{args.guide}, {args.steps} steps of {args.batch_size} rows, "
          f"native bf16 on this machine: {native_bf16()}\n")  # fmt: skip
    print("| precision | s/step | speed-up | whole run s | peak RSS GiB | loss per step |")
    print("|---|---:|---:|---:|---:|---|")
    for row in rows:
        losses = " ".join(f"{x:.3f}" for x in row["loss"])
        print(f"| {row['precision']} | {row['s_per_step']} | {base / row['s_per_step']:.2f}x | "
              f"{row['wall_s']} | {row['peak_rss_gib']} | {losses} |")  # fmt: skip
    if args.out:
        write_json(args.out, {
            "guide": args.guide, "rows": rows, "native_bf16": native_bf16(),
            "command": " ".join(["python", *sys.argv]),
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        })  # fmt: skip


if __name__ == "__main__":
    main()

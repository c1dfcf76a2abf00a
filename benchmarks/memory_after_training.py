"""What a process keeps resident after a training stage returns, with and without
`gcop.optimizers.base.release_memory` (gc, then glibc's `malloc_trim`).

A `gcop experiment` grid trains and evaluates many cells in one long-lived process, so
whatever a finished stage keeps stays for the rest of the grid. Each variant runs LoRA SFT
for `--steps` optimizer steps on real stage-1 rows in its own process and reads the
process's resident memory (`VmRSS`) before training and after `finetune` returns:

    A=runs/experiment-math500-cpu/compiles/supervised/local_qwen2.5-coder-0.5b-instruct
    python benchmarks/memory_after_training.py --task math500 --train 200 --steps 8 \
        --accepted $A/seed-0/sample/accepted.jsonl --out docs/results/memory-after-sft.json

`keep` replaces `release_memory` in the SFT module by a bare `gc.collect()` (what the stage
did before); `release` is the stage as shipped. Linux only (it reads /proc).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from sft_rows import add_sft_row_options, sft_rows  # benchmarks/sft_rows.py (gcop imported late)

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

VARIANTS = ("keep", "release")


def rss_gib() -> float:
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    return round(kib / 2**20, 2)


def measure(args: argparse.Namespace) -> dict:
    """One SFT run in this process under `args.one`; its resident memory before and after."""
    import gcop.optimizers.sft as sft

    if args.one == "keep":
        sft.release_memory = gc.collect
    examples = sft_rows(args)
    before = rss_gib()
    config = sft.SFTStageConfig(max_steps=args.steps, save_steps=10**6, logging_steps=1)
    with tempfile.TemporaryDirectory() as folder:
        sft.finetune(args.guide, examples, config, Path(folder))
    return {"variant": args.one, "steps": args.steps, "rows": len(examples),
            "rss_before_gib": before, "rss_after_stage_gib": rss_gib()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add_sft_row_options(parser)
    add("--steps", type=int, default=8, help="optimizer steps per variant")
    add("--out", type=Path, help="JSON rows (default: print only)")
    add("--one", choices=VARIANTS, help=argparse.SUPPRESS)  # internal: run one variant here
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args)))
        return
    rows = []
    for variant in VARIANTS:
        run = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--one", variant],
                             check=True, capture_output=True, text=True)  # fmt: skip
        rows.append(json.loads(run.stdout.strip().splitlines()[-1]))
    print("| variant | RSS before GiB | RSS after the stage GiB |\n|---|---:|---:|")
    for row in rows:
        print(f"| {row['variant']} | {row['rss_before_gib']} | {row['rss_after_stage_gib']} |")
    if args.out:
        from gcop.atomic import write_json

        write_json(args.out, {
            "command": " ".join(["python", *sys.argv]),
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "rows": rows,
        })  # fmt: skip


if __name__ == "__main__":
    main()

"""LoRA SFT variants side by side on this machine: precisions, SFT options, env variables.

fp32 vs bf16 is what `precision="auto"` buys; any other SFT option or environment variable
can be compared the same way.

Trains the guide's stage-2 adapter for a fixed number of optimizer steps on real stage-1
rows (the accepted strategies of a compile, in the guide's exact training format), once per
variant, each in its own process (so each peak RSS is its own), same seed and data order:

    python benchmarks/cpu_bf16_training.py --guide local/smollm2-135m-instruct --steps 6 \
        --accepted runs/headline-cpu/seed-0/sample/accepted.jsonl
    python benchmarks/cpu_bf16_training.py ... --repeats 2 \
        --variants "bf16;bf16 lora_dropout=0;bf16 ATEN_CPU_CAPABILITY=avx512"

A variant is a precision, then `option=value` overrides of `SFTStageConfig` and
`NAME=value` environment variables (upper case), separated by spaces; variants are
separated by `;`. `--repeats N` runs the whole list N times in turn (ABAB, so a machine
that slows down part-way hurts every variant alike) and reports each variant's median.

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

from sft_rows import add_sft_row_options, sft_rows  # benchmarks/sft_rows.py (gcop imported late)

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def train_once(args: argparse.Namespace) -> dict:
    """One SFT run at `args.one`'s precision; returns its timing, memory and losses."""
    from gcop.atomic import write_json
    from gcop.local.precision import trains_in_bf16
    from gcop.optimizers.sft import SFTStageConfig, finetune

    examples = sft_rows(args)
    precision, overrides, _ = parse_variant(args.one)
    options = {"max_steps": args.steps, "logging_steps": 1, "save_steps": 10**6,
               "per_device_batch_size": args.batch_size, "precision": precision}  # fmt: skip
    config = SFTStageConfig(**{**options, **overrides})  # a variant's options win
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        finetune(args.guide, examples, config, Path(folder))
        wall = time.perf_counter() - start
        log = json.loads((Path(folder) / "train_log.json").read_text())
    train_s = next(r["train_runtime"] for r in log if "train_runtime" in r)
    row = {
        "variant": args.one,
        "precision": precision,
        "bf16": trains_in_bf16(precision),
        "steps": args.steps,
        "rows": len(examples),
        "wall_s": round(wall, 1),  # with loading the model and the data
        "s_per_step": round(train_s / args.steps, 2),  # the Trainer's own clock: steps only
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "loss": [round(r["loss"], 4) for r in log if "loss" in r],
    }
    write_json(args.row_out, row)
    return row


def parse_variant(variant: str) -> tuple[str, dict, dict[str, str]]:
    """`"bf16 lora_dropout=0 ATEN_CPU_CAPABILITY=avx512"` -> precision, SFTStageConfig
    overrides (values typed like the field's default), environment variables."""
    import dataclasses

    from gcop.optimizers.sft import SFTStageConfig

    defaults = {f.name: f.default for f in dataclasses.fields(SFTStageConfig)}
    precision, *settings = variant.split()
    overrides, env = {}, {}
    for setting in settings:
        key, _, value = setting.partition("=")
        if key.isupper():
            env[key] = value
        elif key in defaults:
            overrides[key] = None if value == "None" else type(defaults[key])(value)
        else:
            raise SystemExit(f"variant {variant!r}: {key} is neither an SFTStageConfig field "
                             "nor an upper-case environment variable")  # fmt: skip
    return precision, overrides, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add_sft_row_options(parser)
    add("--steps", type=int, default=6, help="optimizer steps per variant")
    add("--batch-size", type=int, default=8)
    add("--precisions", default="fp32,bf16", help="shorthand for variants of precision only")
    add("--variants", help="';'-separated variants (see the module docstring)")
    add("--repeats", type=int, default=1, help="run the whole list this many times in turn")
    add("--out", type=Path, help="JSON rows (default: print only)")
    add("--one", help=argparse.SUPPRESS)  # internal: run this one variant here
    add("--row-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        train_once(args)
        return

    from gcop.atomic import write_json
    from gcop.local.precision import native_bf16

    variants = (args.variants or args.precisions.replace(",", ";")).split(";")
    variants = [" ".join(v.split()) for v in variants if v.strip()]
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for _ in range(args.repeats):
        for variant in variants:
            _, _, env = parse_variant(variant)
            with tempfile.TemporaryDirectory() as folder:
                row_out = Path(folder) / "row.json"
                command = [sys.executable, __file__, *sys.argv[1:], "--one",
                           variant, "--row-out", str(row_out)]  # fmt: skip
                subprocess.run(command, check=True, env={**os.environ, **env})
                runs[variant].append(json.loads(row_out.read_text()))
    rows = []
    for repeats in runs.values():
        median = sorted(r["s_per_step"] for r in repeats)[len(repeats) // 2]
        rows.append({**repeats[0], "s_per_step": median,
                     "s_per_step_runs": [r["s_per_step"] for r in repeats],
                     "peak_rss_gib": max(r["peak_rss_gib"] for r in repeats)})  # fmt: skip
    base = rows[0]["s_per_step"]
    print(f"\n{args.guide}, {args.steps} steps of {args.batch_size} rows, {args.repeats} "
          f"run(s) per variant, native bf16 on this machine: {native_bf16()}\n")  # fmt: skip
    print(
        "| variant | s/step (median; runs) | speed-up | whole run s | peak RSS GiB | "
        "loss per step |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for row in rows:
        losses = " ".join(f"{x:.3f}" for x in row["loss"])
        runs_s = ", ".join(map(str, row["s_per_step_runs"]))
        print(f"| {row['variant']} | {row['s_per_step']} ({runs_s}) | "
              f"{base / row['s_per_step']:.2f}x | {row['wall_s']} | {row['peak_rss_gib']} | "
              f"{losses} |")  # fmt: skip
    if args.out:
        write_json(args.out, {
            "guide": args.guide, "rows": rows, "native_bf16": native_bf16(),
            "command": " ".join(["python", *sys.argv]),
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        })  # fmt: skip


if __name__ == "__main__":
    main()

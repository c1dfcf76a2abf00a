"""Which prompt format suits a core, and what do near-oracle plans give it (the ceiling)?

    python benchmarks/core_prompts.py --core local/qwen2.5-coder-0.5b-instruct --limit 30 \
        --formats plain,chat,json,xml --out docs/results/core-prompts-qwen0.5b.json

For each prompt format (a DSPy adapter, see gcop.adapters): the core alone on a seeded
sample of the dev split, and the same core following the plan derived from each problem's
reference solution (`Strategy.from_reference`; problems whose derived plan is invalid or
leaks run the core alone, as deployment would). Greedy decoding, so the seed only picks the
problems. Prints accuracy with 95% Wilson intervals and the paired counts (gained / lost)
with an exact McNemar p-value, and writes everything to `--out`.
"""

from __future__ import annotations

import argparse
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from gcop.atomic import write_json  # noqa: E402
from gcop.metrics import wilson  # noqa: E402
from gcop.program import Core  # noqa: E402
from gcop.programs import get_task  # noqa: E402
from gcop.stats import mcnemar_exact  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", default="local/qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--task", default="gsm8k")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--formats", default="plain,chat")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--plans", choices=("reference", "givens"), default="reference",
                        help="reference plans as derived, or with every number the question "
                        "does not state replaced by 'that amount'")  # fmt: skip
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    task = get_task(args.task)
    examples = random.Random(args.seed).sample(task.load_split(args.split), args.limit)
    plans = []
    for example in examples:
        plan = task.strategy_type.from_reference(example, givens_only=args.plans == "givens")
        plans.append(plan.render() if plan is not None and plan.check(example).ok else None)
    rows = {}
    for name in args.formats.split(","):
        core = Core(args.core, task=task.signature, adapter=name,
                    max_tokens=task.core_max_tokens)  # fmt: skip

        def solve(job, core=core):
            example, plan = job
            return task.metric(example, core(**dict(example.inputs()), strategy=plan)) > 0

        with ThreadPoolExecutor(args.threads) as pool:
            alone = list(pool.map(solve, [(e, None) for e in examples]))
            guided = list(pool.map(solve, zip(examples, plans, strict=True)))
        gained = sum(g and not a for a, g in zip(alone, guided, strict=True))
        lost = sum(a and not g for a, g in zip(alone, guided, strict=True))
        rows[name] = {
            "alone": {"correct": sum(alone), **vars(wilson(sum(alone), len(examples)))},
            "reference_plans": {"correct": sum(guided), **vars(wilson(sum(guided), len(examples)))},
            "gained": gained,
            "lost": lost,
            "p_value": mcnemar_exact(gained, lost),
            "outcomes": {"alone": alone, "reference_plans": guided},
        }
        print(f"{args.core} format={name} n={len(examples)}: alone {sum(alone)}/{len(examples)} "
              f"{wilson(sum(alone), len(examples))}; with reference plans {sum(guided)}/"
              f"{len(examples)} {wilson(sum(guided), len(examples))}; gained {gained}, lost "
              f"{lost}, McNemar p={rows[name]['p_value']:.3f}", flush=True)  # fmt: skip
    if args.out:
        write_json(args.out, {"core": args.core, "task": args.task, "split": args.split,
                              "n": len(examples), "seed": args.seed, "plans": args.plans,
                              "usable_reference_plans": sum(p is not None for p in plans),
                              "formats": rows})  # fmt: skip


if __name__ == "__main__":
    main()

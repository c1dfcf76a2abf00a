"""DSPy's `BootstrapFewShot` against gcop's `BatchedBootstrapFewShot`, side by side.

The same compile as the `bootstrap-fewshot` method of `gcop experiment` (the core alone, 4
bootstrapped + 4 labelled demos, the training problems as worked solutions in the seed's
order, the core as its own teacher), run twice in one process, each time with a fresh,
empty call cache so that every call is really made: first DSPy's sequential bootstrap, then
the batched one. Reported: wall time, calls made, and whether the two kept the same demos
(a local core's batched greedy decode may differ from its one-at-a-time decode in a token,
and with it a demo; the loopback test `tests/test_bootstrap.py` checks the equality on a
deterministic server).

    python benchmarks/bootstrap_batching.py --task gsm8k --core local/qwen2.5-coder-0.5b-instruct \
        --out docs/results/bootstrap-batching-gsm8k.json
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

from gcop.atomic import write_json  # noqa: E402
from gcop.bench import select_examples  # noqa: E402
from gcop.calls import CallCache, set_default_cache  # noqa: E402
from gcop.optimizers.bootstrap import BatchedBootstrapFewShot  # noqa: E402
from gcop.optimizers.methods import worked_in_order  # noqa: E402
from gcop.program import Core, CoreOnly  # noqa: E402
from gcop.programs import get_task  # noqa: E402


def compile_once(optimizer: dspy.BootstrapFewShot, args, task, trainset, cache_dir: Path):
    """One bootstrap compile with an empty cache: (seconds, calls made, demos)."""
    cache = CallCache(cache_dir)
    set_default_cache(cache)
    student = CoreOnly(Core(args.core, task=task.signature, max_tokens=task.core_max_tokens))
    student.core.guided = None
    started = time.perf_counter()
    with dspy.context(lm=student.core.lm, adapter=student.core.adapter):
        compiled = optimizer.compile(student, trainset=trainset)
    seconds = time.perf_counter() - started
    calls = len(cache.store)
    demos = [[{k: str(v) for k, v in d.items()} for d in p.demos]
             for _, p in compiled.named_predictors()]  # fmt: skip
    set_default_cache(None)
    return seconds, calls, demos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="gsm8k")
    parser.add_argument("--core", default="local/qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--train", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lookahead", type=int, default=32)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    task = get_task(args.task)
    trainset = worked_in_order(task, select_examples(task, "train", args.train, 0), args.seed)
    options = dict(metric=task.metric, max_bootstrapped_demos=4, max_labeled_demos=4)
    # load the model (and its engine's threads) before either clock starts
    Core(args.core, max_tokens=1).lm("Hi")

    optimizers = {
        "sequential": dspy.BootstrapFewShot(**options),
        "batched": BatchedBootstrapFewShot(lookahead=args.lookahead, **options),
    }
    with tempfile.TemporaryDirectory() as scratch:
        runs = {name: compile_once(optimizer, args, task, trainset, Path(scratch, name))
                for name, optimizer in optimizers.items()}  # fmt: skip
    same = runs["sequential"][2] == runs["batched"][2]
    ratio = runs["sequential"][0] / runs["batched"][0]
    result = {
        "task": args.task, "core": args.core, "train": args.train, "seed": args.seed,
        "lookahead": args.lookahead, "threads_env": os.environ.get("GCOP_CT2_THREADS"),
        "max_batch_env": os.environ.get("GCOP_LOCAL_MAX_BATCH"),
        **{f"{name}_seconds": round(r[0], 1) for name, r in runs.items()},
        **{f"{name}_calls": r[1] for name, r in runs.items()},
        "same_demos": same, "sequential_over_batched": round(ratio, 2),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }  # fmt: skip
    for name, (seconds, calls, _) in runs.items():
        print(f"{name:>10}: {seconds:7.1f} s, {calls} calls")
    print(f"same demos: {same}; sequential/batched = {ratio:.2f}")
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()

"""Few-shot prompts on the ct2 engine: their shared prefix read once per call, or per row.

A few-shot prompt (the `core-demos` cell of `gcop experiment`: the task's instruction and
worked training problems, then the problem) repeats hundreds of tokens in every row of a
batch. `Ct2Generator` passes the tokens its rows share as CTranslate2's `static_prompt`,
read for one row and copied to the others. This times the same greedy batch both ways, on
the same loaded model, alternating the order over `--rounds`, and reports the wall time,
how many replies came out token for token the same, and the accuracy of each (a batch's
greedy decode depends on its shapes in int8, so a few replies may differ either way):

    python benchmarks/ct2_shared_prefix.py --task math500 --n 32 \
        --out docs/results/ct2-shared-prefix-math500.json
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

from gcop.adapters import PlainAdapter  # noqa: E402
from gcop.atomic import write_json  # noqa: E402
from gcop.bench import select_examples  # noqa: E402
from gcop.local import MODELS  # noqa: E402
from gcop.local.engine import GenerationRequest  # noqa: E402
from gcop.local.provider import prompt_ids  # noqa: E402
from gcop.programs import get_task  # noqa: E402


def decode(generator, requests, share: bool) -> tuple[float, list]:
    generator.share_prefix = share
    started = time.perf_counter()
    results = generator.generate(requests)
    return time.perf_counter() - started, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="math500")
    parser.add_argument("--core", default="local/qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--n", type=int, default=32, help="test problems, one batch")
    parser.add_argument("--demos", type=int, default=3, help="worked training problems shown")
    parser.add_argument("--max-tokens", type=int, help="default: the task's core budget")
    parser.add_argument("--rounds", type=int, default=1, help="each mode this many times")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    task = get_task(args.task)
    adapter, signature = PlainAdapter(), task.signature
    demos = [task.core_demo(ex) for ex in select_examples(task, "train", args.demos, 0)]
    problems = select_examples(task, "test", args.n, 0)
    loaded = MODELS.get(f"{args.core}?engine=ct2")
    generator = loaded.generator
    budget = args.max_tokens or task.core_max_tokens
    messages = [adapter.format(signature, demos, ex.inputs()) for ex in problems]
    requests = [GenerationRequest(prompt_ids(loaded.tokenizer, m), budget) for m in messages]
    lengths = sorted(len(r.prompt_ids) for r in requests)
    decode(generator, requests[:2], share=False)  # warm up: threads, allocator

    times: dict[str, list[float]] = {"per_row": [], "shared": []}
    replies: dict[str, list] = {}
    for round_ in range(args.rounds):
        order = ["per_row", "shared"] if round_ % 2 == 0 else ["shared", "per_row"]
        for mode in order:
            seconds, results = decode(generator, requests, share=mode == "shared")
            times[mode].append(seconds)
            replies[mode] = results
            print(f"round {round_}: {mode:>8} {seconds:7.1f} s", flush=True)

    def accuracy(results) -> float:
        right = 0.0
        for ex, result in zip(problems, results, strict=True):
            text = loaded.tokenizer.decode(result.token_ids, skip_special_tokens=True)
            try:
                prediction = dspy.Prediction(**adapter.parse(signature, text))
            except Exception:  # an unparseable reply scores 0, as in `gcop bench`
                continue
            right += task.metric(ex, prediction)
        return right / len(problems)

    pairs = zip(replies["per_row"], replies["shared"], strict=True)
    same = sum(a.token_ids == b.token_ids for a, b in pairs)
    mean = {mode: sum(t) / len(t) for mode, t in times.items()}
    result = {
        "task": args.task, "core": args.core, "engine": "ct2", "n": args.n,
        "demos": args.demos, "max_tokens": budget, "rounds": args.rounds,
        "prompt_tokens_min_median_max": [lengths[0], lengths[len(lengths) // 2], lengths[-1]],
        "seconds": {mode: [round(t, 1) for t in ts] for mode, ts in times.items()},
        "per_row_over_shared": round(mean["per_row"] / mean["shared"], 2),
        "identical_replies": same,
        "accuracy": {mode: round(accuracy(r), 3) for mode, r in replies.items()},
        "threads_env": os.environ.get("GCOP_CT2_THREADS"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }  # fmt: skip
    print(result)
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()

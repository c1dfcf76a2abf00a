"""Decode throughput of the `local/` provider: one request at a time vs concurrent requests.

Requests go through the real path (litellm.completion -> local provider -> batcher), from
`concurrency` threads at once; the batcher decodes whatever arrives together as one batch.
Reports completion tokens per second, and the ratio to single-stream, measured side by side
in one process. Usage:

    python benchmarks/local_throughput.py --model local/smollm2-135m-instruct --tokens 64
"""

from __future__ import annotations

import argparse
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import litellm
import torch

import gcop.local.provider  # noqa: F401  (registers the local/ provider with LiteLLM)


def one(model: str, i: int, tokens: int) -> int:
    messages = [{"role": "user", "content": f"Write a story about the number {i}."}]
    response = litellm.completion(model=model, messages=messages, max_tokens=tokens,
                                  temperature=0.8, seed=i)  # fmt: skip
    return response.usage.completion_tokens


def throughput(model: str, concurrency: int, tokens: int, rounds: int) -> float:
    total, started = 0, time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        total = sum(pool.map(lambda i: one(model, i, tokens), range(concurrency * rounds)))
    return total / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local/smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--levels", default="1,4,16,32")
    args = parser.parse_args()
    one(args.model, 0, 8)  # load and warm up
    rows = []
    for level in map(int, args.levels.split(",")):
        rate = throughput(args.model, level, args.tokens, rounds=1 if level > 1 else 2)
        rows.append((level, rate))
    base = rows[0][1]
    print(f"\n### {args.model}: {args.tokens} new tokens/request, temperature 0.8")
    print(f"{datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")  # fmt: skip
    print("| concurrent requests | tokens/s | x single |\n|---:|---:|---:|")
    for level, rate in rows:
        print(f"| {level} | {rate:.1f} | {rate / base:.1f} |")


if __name__ == "__main__":
    main()

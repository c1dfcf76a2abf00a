"""Decode engines of the `local/` provider side by side, in one process and one run.

Every engine is measured through the real path (`litellm.completion` -> `local/` ->
the engine's batching worker) at 1 and 32 concurrent requests, each asking for `--tokens`
new tokens at temperature 0.8 with no seed (a seeded ct2 request is decoded on its own
replica; see gcop/local/ct2.py). llama.cpp is the single-stream reference, on the model's
GGUF file, through llama-cpp-python or xllamacpp (`pip install 'exectune[bench]'`: prebuilt CPU
wheels of llama.cpp's server; it also gives llama.cpp's own continuous batching at each
level, for comparison). The last line is

    aggregate/llama.cpp-single = R

R: tokens/s of the fastest engine at 32 concurrent requests over llama.cpp's single stream
(over the torch loop's single stream when llama.cpp is absent; the line says so).

    python benchmarks/engines.py --quick                       # SmolLM2-135M, 1 and 32
    python benchmarks/engines.py --model qwen2.5-coder-0.5b-instruct --agreement 20
    python benchmarks/engines.py --thread-sweep                # CTranslate2 threads
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402

import gcop  # noqa: E402,F401  (registers local/)
from gcop.local.engines import ct2_installed  # noqa: E402
from gcop.local.registry import models_dir  # noqa: E402


def one(model: str, i: int, tokens: int, temperature: float = 0.8) -> int:
    messages = stories(1, start=i)[0]
    response = litellm.completion(model=model, messages=messages, max_tokens=tokens,
                                  temperature=temperature)  # fmt: skip
    return response.usage.completion_tokens


def throughput(model: str, concurrency: int, tokens: int, rounds: int) -> float:
    """Completion tokens per second with `concurrency` requests in flight."""
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        total = sum(pool.map(lambda i: one(model, i, tokens), range(concurrency * rounds)))
    return total / (time.perf_counter() - started)


LLAMA_CPP_PACKAGES = ("llama-cpp-python", "xllamacpp")
"""Either binding serves as the llama.cpp reference: llama-cpp-python needs a source build
here (no CPU wheel on PyPI); xllamacpp ships prebuilt CPU wheels of llama.cpp's server."""


def stories(count: int, start: int = 0) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"Write a story about the number {i}."}]
            for i in range(start, start + count)]  # fmt: skip


def llama_cpp_rates(name: str, tokens: int, levels: list[int], threads: int) -> dict | None:
    """llama.cpp's tokens/s on the model's GGUF file at each level of concurrency (1: the
    single-stream reference), or None when neither binding is installed. With xllamacpp,
    the levels above 1 go through llama.cpp's own server with as many parallel slots
    (its continuous batching); llama-cpp-python has no batching, so it gives level 1 only."""
    path = models_dir() / f"{name}.gguf"
    try:
        from llama_cpp import Llama
    except ImportError:
        Llama = None
    if Llama is not None:
        llm = Llama(model_path=str(path), n_ctx=1024, n_threads=threads, verbose=False)
        llm.create_chat_completion([{"role": "user", "content": "Hi"}], max_tokens=8)  # warm
        total, started = 0, time.perf_counter()
        for messages in stories(2):
            reply = llm.create_chat_completion(messages, max_tokens=tokens, temperature=0.8)
            total += reply["usage"]["completion_tokens"]
        return {"binding": "llama-cpp-python", 1: total / (time.perf_counter() - started)}
    try:
        import xllamacpp
    except ImportError:
        return None
    top = max(levels)
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_parallel = top
    params.n_ctx = top * (tokens + 64)  # the context is shared by the slots
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
    params.verbosity = -1
    server = xllamacpp.Server(params)

    def complete(messages) -> int:
        body = {"messages": messages, "max_tokens": tokens, "temperature": 0.8}
        return server.handle_chat_completions(body)["usage"]["completion_tokens"]

    complete([{"role": "user", "content": "Hi"}])  # warm up
    rates: dict = {"binding": f"xllamacpp {getattr(xllamacpp, '__version__', '')}".strip()}
    for level in levels:
        rounds = 2 if level == 1 else 1
        started = time.perf_counter()
        with ThreadPoolExecutor(level) as pool:
            total = sum(pool.map(complete, stories(level * rounds)))
        rates[level] = total / (time.perf_counter() - started)
    return rates


def engines() -> list[str]:
    return ["torch", "ct2"] if ct2_installed() else ["torch"]


def run_throughput(name: str, levels: list[int], tokens: int) -> dict[tuple[str, int], float]:
    rates = {}
    for engine in engines():
        model = f"local/{name}?engine={engine}"
        one(model, 0, 8)  # load (and convert once), warm up
        for level in levels:
            rates[engine, level] = throughput(model, level, tokens, rounds=2 if level == 1 else 1)
    return rates


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of the rate k/n."""
    if n == 0:
        return 0.0, 1.0
    z, p = 1.96, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def agreement(name: str, count: int, tokens: int) -> None:
    """Greedy answers of every engine on the first `count` GSM8K dev questions."""
    from gcop.programs import data
    from gcop.programs.math import normalize_number

    rows = list(data.split("gsm8k", "dev"))[:count]
    answers: dict[str, list[tuple[str, str | None]]] = {}
    for engine in engines():
        model = f"local/{name}?engine={engine}"

        def solve(row, model=model):
            prompt = f"{row['question']}\nSolve it step by step; end with 'Answer: <number>'."
            messages = [{"role": "user", "content": prompt}]
            reply = litellm.completion(model, messages, max_tokens=tokens, temperature=0)
            text = reply.choices[0].message.content
            tail = text.rsplit("Answer", 1)[-1]
            numbers = [normalize_number(t) for t in tail.replace(",", "").split()]
            return text, next((x for x in reversed(numbers) if x is not None), None)

        started = time.perf_counter()
        with ThreadPoolExecutor(len(rows)) as pool:
            answers[engine] = list(pool.map(solve, rows))
        print(f"{engine}: {len(rows)} greedy answers in {time.perf_counter() - started:.0f} s")
    gold = [normalize_number(r["answer"]) for r in rows]
    print(f"\n| engine | correct (n={len(rows)}) | 95% CI |\n|---|---:|---|")
    for engine, got in answers.items():
        k = sum(a == g for (_, a), g in zip(got, gold, strict=True))
        low, high = wilson(k, len(rows))
        print(f"| {engine} | {k}/{len(rows)} | {low:.2f}-{high:.2f} |")
    if len(answers) == 2:
        (_, a), (_, b) = answers.items()
        same_text = sum(x[0] == y[0] for x, y in zip(a, b, strict=True))
        same_answer = sum(x[1] == y[1] for x, y in zip(a, b, strict=True))
        for label, k in (("identical text", same_text), ("same final number", same_answer)):
            low, high = wilson(k, len(rows))
            print(f"torch vs ct2, {label}: {k}/{len(rows)} (95% CI {low:.2f}-{high:.2f})")


def thread_sweep(name: str, tokens: int, batch: int) -> None:
    """CTranslate2 inter/intra threads on this machine, straight on `generate_batch`."""
    import ctranslate2
    from transformers import AutoTokenizer

    from gcop.local import ct2
    from gcop.local.registry import resolve

    source = resolve(name)
    folder, tokenizer = ct2.converted(source), AutoTokenizer.from_pretrained(source)
    prompts = [
        tokenizer.convert_ids_to_tokens(tokenizer.apply_chat_template(
            [{"role": "user", "content": f"Write a story about the number {i}."}],
            add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
        for i in range(batch)
    ]  # fmt: skip
    print(f"\n| inter_threads | intra_threads | 1 prompt tok/s | {batch} prompts tok/s |")
    print("|---:|---:|---:|---:|")
    for inter, intra in ((1, 1), (1, 2), (2, 1)) * 2:  # twice, interleaved: load drifts
        model = ctranslate2.Generator(str(folder), compute_type=ct2.compute_type(),
                                      inter_threads=inter, intra_threads=intra)  # fmt: skip
        rates = []
        for group in (prompts[:1], prompts):
            started = time.perf_counter()
            results = model.generate_batch(
                group, max_length=tokens, include_prompt_in_result=False, sampling_topk=0,
                sampling_temperature=0.8, max_batch_size=math.ceil(len(group) / inter),
            )  # fmt: skip
            made = sum(len(r.sequences_ids[0]) for r in results)
            rates.append(made / (time.perf_counter() - started))
        print(f"| {inter} | {intra} | {rates[0]:.1f} | {rates[1]:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="a local/ model name")
    parser.add_argument("--quick", action="store_true", help="SmolLM2-135M at 1 and 32")
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per request")
    parser.add_argument("--levels", default="1,32", help="concurrent requests to measure")
    parser.add_argument("--agreement", type=int, default=0, help="GSM8K dev questions")
    parser.add_argument("--thread-sweep", action="store_true")
    parser.add_argument(
        "--llama-threads", type=int, default=0,
        help="llama.cpp threads (0: the same as CTranslate2's, GCOP_CT2_THREADS)",
    )  # fmt: skip
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="torch.set_num_threads for the torch loop (0: torch's default)",
    )
    args = parser.parse_args()
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    name = "smollm2-135m-instruct" if args.quick else args.model
    levels = [1, 32] if args.quick else [int(x) for x in args.levels.split(",")]
    import torch

    from gcop.local.ct2 import default_threads

    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} "
          f"cores (load average {os.getloadavg()[0]:.1f}), {name}, {args.tokens} new "
          f"tokens/request, temperature 0.8, no seed; torch {torch.get_num_threads()} threads, "
          f"ct2 {default_threads()} intra threads")  # fmt: skip
    if args.thread_sweep:
        thread_sweep(name, args.tokens, batch=32)
        return
    if args.agreement:
        agreement(name, args.agreement, tokens=256)
        return
    llama = llama_cpp_rates(name, args.tokens, levels, args.llama_threads or default_threads())
    rates = run_throughput(name, levels, args.tokens)
    print("\n| engine | concurrent requests | tokens/s | x torch loop, same level |")
    print("|---|---:|---:|---:|")
    if llama is None:
        print(f"| llama.cpp | 1 | not measured: install {' or '.join(LLAMA_CPP_PACKAGES)} | |")
    else:
        for level in levels:
            if level in llama:
                print(
                    f"| llama.cpp ({llama['binding']}, its server, not `local/`) | {level} | "
                    f"{llama[level]:.1f} | {llama[level] / rates['torch', level]:.2f} |"
                )
    for (engine, level), rate in rates.items():
        print(f"| {engine} | {level} | {rate:.1f} | {rate / rates['torch', level]:.2f} |")
    top = max(levels)
    best_engine, best = max(((e, r) for (e, lv), r in rates.items() if lv == top),
                            key=lambda item: item[1])  # fmt: skip
    if llama is not None:
        print(
            f"aggregate/llama.cpp-single = {best / llama[1]:.2f} ({best_engine} at {top} "
            f"through local/ over {llama['binding']} single stream)"
        )
    else:
        single = rates["torch", min(levels)]
        print(f"aggregate/llama.cpp-single = {best / single:.2f} (llama.cpp absent: "
              f"{best_engine} at {top} over the torch loop's single stream)")  # fmt: skip


if __name__ == "__main__":
    main()

"""The provider's decode loop vs `transformers` `model.generate`, side by side, greedy.

python benchmarks/decode_vs_generate.py --model smollm2-135m-instruct --tokens 64
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from gcop.local.engine import BatchedGenerator, GenerationRequest
from gcop.local.registry import resolve


def rate(fn, tokens: int) -> float:
    started = time.perf_counter()
    fn()
    return tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    folder = resolve(args.model)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    messages = [{"role": "user", "content": "Count from 1 to 100."}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = list(ids["input_ids"]) if hasattr(ids, "keys") else list(ids)
    loop = BatchedGenerator(model, [tokenizer.eos_token_id], tokenizer.eos_token_id)
    n, b = args.tokens, args.batch
    # min_new_tokens / a budget with no early stop: both decode exactly n tokens per row
    request = GenerationRequest(ids, max_new_tokens=n)
    generate_kwargs = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False)
    print(f"| torch threads | generate x1 | loop x1 | generate x{b} | loop x{b} | (tok/s) |")
    print("|---:|---:|---:|---:|---:|---|")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        batch = torch.tensor([ids] * b)
        cells = [
            rate(lambda: model.generate(torch.tensor([ids]), **generate_kwargs), n),
            rate(lambda: loop.generate([request]), n),
            rate(
                lambda batch=batch: model.generate(
                    batch, attention_mask=torch.ones_like(batch), **generate_kwargs
                ),
                n * b,
            ),  # fmt: skip
            rate(lambda: loop.generate([request] * b), n * b),
        ]
        print(f"| {threads} | " + " | ".join(f"{c:.1f}" for c in cells) + " | |")


if __name__ == "__main__":
    main()

"""How often a local model writes a parseable math plan, with and without schema-constrained
decoding, and what constraining costs in tokens/s.

Each GSM8K train question is sent through the real path (`litellm.completion` ->
`local/` provider -> batcher) with a plan prompt, all questions of one condition at once
(so they decode as one batch); once without and once with `response_format` (the plan's
JSON schema, decoded under llguidance). "Parseable" is strict: the completion parses into
the pydantic plan type as it is, no repair. "Valid" adds gcop's MathPlan checks (2-8
steps, no final-answer marker, length budget, no leak of the gold answer). Conditions run
side by side in one process. Usage:

    python benchmarks/constrained_gsm8k.py --model local/smollm2-135m-instruct --n 20
"""

from __future__ import annotations

import argparse
import math
import platform
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Annotated

import litellm
import torch
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

import gcop  # noqa: F401  (registers local/)
from gcop.local import constrained
from gcop.programs import data
from gcop.programs.math import MathPlan


class PlanJSON(BaseModel):
    """MathPlan's shape with its limits stated as fields, so that the schema carries them."""

    model_config = ConfigDict(extra="forbid")
    steps: list[Annotated[str, StringConstraints(min_length=1, max_length=120)]] = Field(
        min_length=2, max_length=8
    )


INSTRUCTION = " ".join(MathPlan.__doc__.split())
EXAMPLE = '\nReply with JSON only, in this form: {"steps": ["first step", "second step"]}'
PLACEHOLDER = re.compile(r"(first|second|third|fourth|fifth|\w+th) step", re.IGNORECASE)


class MaskTimer:
    """Time spent in the constraint's mask and advance calls (instrumentation only)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.tokens = 0
        row = constrained.LLGuidanceRow
        self._mask, self._advance = row.mask, row.advance
        timer = self

        def mask(self_, logits):
            started = time.perf_counter()
            timer._mask(self_, logits)
            timer.seconds += time.perf_counter() - started
            timer.tokens += 1

        def advance(self_, token):
            started = time.perf_counter()
            timer._advance(self_, token)
            timer.seconds += time.perf_counter() - started

        row.mask, row.advance = mask, advance


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def run(model: str, rows: list[dict], constrained_: bool, temperature: float, tokens: int,
        example: bool = True):  # fmt: skip
    fmt = {"response_format": constrained.response_format_for(PlanJSON)} if constrained_ else {}
    system = INSTRUCTION + (EXAMPLE if example else "")

    def one(i: int):
        messages = [{"role": "system", "content": system},
                    {"role": "user", "content": rows[i]["question"]}]  # fmt: skip
        return litellm.completion(model=model, messages=messages, max_tokens=tokens,
                                  temperature=temperature, seed=i, **fmt)  # fmt: skip

    started = time.perf_counter()
    with ThreadPoolExecutor(len(rows)) as pool:
        responses = list(pool.map(one, range(len(rows))))
    wall = time.perf_counter() - started
    parsed = valid = stopped = copied = 0
    for row, response in zip(rows, responses, strict=True):
        choice = response.choices[0]
        stopped += choice.finish_reason == "stop"
        try:
            plan = PlanJSON.model_validate_json(choice.message.content)
        except ValueError:
            continue
        parsed += 1
        valid += MathPlan(steps=plan.steps).check(_example(row)).ok
        copied += all(PLACEHOLDER.fullmatch(step.strip()) for step in plan.steps)
    completion = sum(r.usage.completion_tokens for r in responses)
    return {"parsed": parsed, "valid": valid, "stopped": stopped, "n": len(rows), "copied": copied,
            "tokens": completion, "tok_s": completion / wall, "wall": wall,
            "sample": responses[0].choices[0].message.content}  # fmt: skip


def _example(row: dict):
    import dspy

    return dspy.Example(question=row["question"], answer=row["answer"]).with_inputs("question")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local/smollm2-135m-instruct")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--temperatures", default="0,0.7")
    parser.add_argument("--decodings", default="free,schema,schema-no-example",
                        help="free: prompt with an example; schema: the same under the "
                             "schema; schema-no-example: under the schema, no example")  # fmt: skip
    args = parser.parse_args()
    rows = list(data.split("gsm8k", "train").select(range(args.n)))
    run(args.model, rows[:1], True, 0.0, 8)  # load the model and llguidance's tokenizer
    timer = MaskTimer()
    results = []
    for temperature in map(float, args.temperatures.split(",")):
        for decoding in args.decodings.split(","):
            constrained_ = decoding.startswith("schema")
            before = (timer.seconds, timer.tokens)
            result = run(args.model, rows, constrained_, temperature, args.tokens,
                         example=decoding != "schema-no-example")  # fmt: skip
            result["mask_ms"] = (
                1000 * (timer.seconds - before[0]) / max(1, timer.tokens - before[1])
                if constrained_ else 0.0
            )  # fmt: skip
            results.append((temperature, decoding, result))
            print(f"T={temperature} {decoding}: "
                  f"{result['parsed']}/{result['n']} parseable, {result['tok_s']:.1f} tok/s",
                  flush=True)  # fmt: skip
    print(f"\n### {args.model}: {args.n} GSM8K train questions, max_tokens {args.tokens}")
    print(f"{datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, one batch of {args.n} per condition, "
          f"seed = question index\n")  # fmt: skip
    print("| temperature | decoding | parseable (95% CI) | valid MathPlan | copies the example "
          "| ended by itself | completion tokens | tokens/s | mask ms/token |")  # fmt: skip
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for temperature, decoding, r in results:
        low, high = wilson(r["parsed"], r["n"])
        print(f"| {temperature} | {decoding} "
              f"| {r['parsed']}/{r['n']} ({low:.2f}-{high:.2f}) | {r['valid']}/{r['n']} "
              f"| {r['copied']}/{r['n']} "
              f"| {r['stopped']}/{r['n']} | {r['tokens']} | {r['tok_s']:.1f} "
              f"| {r['mask_ms']:.2f} |")  # fmt: skip
    for temperature, decoding, r in results:
        print(f"\nfirst completion, T={temperature}, {decoding}: {r['sample'][:300]!r}")


if __name__ == "__main__":
    main()

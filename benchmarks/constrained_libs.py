"""Structured-generation libraries side by side on one tokenizer and one strategy schema.

Compares xgrammar, llguidance, outlines (outlines-core) and lm-format-enforcer on what
gcop needs from a logits processor for `local/` models: installed size (with the new
dependencies each pulls into a gcop environment), one-off tokenizer preparation, schema
compile time, CPU time per decoded token (mask computed and applied to a full-vocabulary
logits row, then the state advanced), and whether the JSON-schema keywords pydantic emits
for a strategy (minItems/maxItems, minLength/maxLength, additionalProperties) are enforced.
Each feature check walks a JSON text token by token through the library's mask and says
whether the library lets it through (a violating text must be stopped somewhere, a valid
one must reach a state where end-of-sequence is allowed). Usage:

    python benchmarks/constrained_libs.py --tokenizer ~/.cache/gcop/models/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import statistics
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import torch
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# What each library adds to a gcop environment (from `pip install --dry-run` next to
# gcop's own dependencies; torch, transformers and pydantic are already there).
NEW_DISTRIBUTIONS = {
    "xgrammar": ["xgrammar", "apache-tvm-ffi", "triton"],
    "llguidance": ["llguidance"],
    "outlines": ["outlines", "outlines_core", "genson"],
    "lm-format-enforcer": ["lm-format-enforcer", "interegular"],
}


class Plan(BaseModel):
    """The MathPlan shape with its constraints stated as pydantic fields."""

    model_config = ConfigDict(extra="forbid")
    steps: list[Annotated[str, StringConstraints(min_length=1, max_length=80)]] = Field(
        min_length=2, max_length=8
    )


STEPS = ["Find how many apples Tom has.", "Subtract the apples he gave away.",
         "Multiply by the price of one apple.", "Add the cost of the basket.",
         "Divide the total by the number of friends.", "Round to the nearest cent.",
         "Check the units.", "Report the amount per friend."]  # fmt: skip
CASES = {  # name -> (text, must be accepted)
    "valid, 8 steps": (json.dumps({"steps": STEPS}), True),
    "minItems (1 step)": (json.dumps({"steps": STEPS[:1]}), False),
    "maxItems (9 steps)": (json.dumps({"steps": [*STEPS, "Done."]}), False),
    "maxLength (100-char step)": (json.dumps({"steps": ["a" * 100, "b"]}), False),
    "additionalProperties": (json.dumps({"steps": STEPS[:2], "answer": 3}), False),
}


def apply_mask(logits: torch.Tensor, mask: torch.Tensor | list[int]) -> None:
    """One shared way to apply a mask (32-bit packed, or a list of allowed ids), untimed, so
    that the timings compare the libraries' own work."""
    if isinstance(mask, list):
        keep = torch.zeros(logits.shape[-1], dtype=torch.bool)
        keep[torch.tensor(mask, dtype=torch.long)] = True
    else:
        bits = (mask.unsqueeze(-1) >> torch.arange(32, dtype=torch.int32)) & 1
        keep = bits.flatten()[: logits.shape[-1]].bool()
    logits.masked_fill_(~keep, float("-inf"))


class Llguidance:
    name = "llguidance"

    def prepare(self, tokenizer) -> None:
        import llguidance.hf

        self.tok = llguidance.hf.from_tokenizer(tokenizer)

    def compile(self, schema: dict) -> None:
        from llguidance import LLMatcher

        self.grammar = LLMatcher.grammar_from_json_schema(schema)
        LLMatcher(self.tok, self.grammar).get_error()  # the grammar is built here

    def start(self):
        from llguidance import LLMatcher

        return LLMatcher(self.tok, self.grammar)

    def fill(self, state) -> torch.Tensor:
        import llguidance.torch

        bitmask = llguidance.torch.allocate_token_bitmask(1, self.tok.vocab_size)
        llguidance.torch.fill_next_token_bitmask(state, bitmask, 0)
        return bitmask[0]

    def advance(self, state, token: int) -> None:
        state.consume_token(token)


class Xgrammar:
    name = "xgrammar"

    def prepare(self, tokenizer) -> None:
        import xgrammar

        self.info = xgrammar.TokenizerInfo.from_huggingface(tokenizer)
        self.compiler = xgrammar.GrammarCompiler(self.info, cache_enabled=False)

    def compile(self, schema: dict) -> None:
        self.grammar = self.compiler.compile_json_schema(json.dumps(schema))

    def start(self):
        import xgrammar

        return xgrammar.GrammarMatcher(self.grammar)

    def fill(self, state) -> torch.Tensor:
        import xgrammar

        bitmask = xgrammar.allocate_token_bitmask(1, self.info.vocab_size)
        state.fill_next_token_bitmask(bitmask)
        return bitmask[0]

    def advance(self, state, token: int) -> None:
        state.accept_token(token)


class OutlinesCore:
    name = "outlines"

    def prepare(self, tokenizer) -> None:
        from outlines.backends.outlines_core import OutlinesCoreBackend
        from outlines.models.transformers import TransformerTokenizer

        wrapped = TransformerTokenizer(tokenizer)
        self.vocabulary = OutlinesCoreBackend.create_outlines_core_vocabulary(
            wrapped.get_vocab(), wrapped.eos_token_id, wrapped.eos_token,
            wrapped.convert_token_to_string,
        )  # fmt: skip
        self.vocab_size = len(tokenizer)

    def compile(self, schema: dict) -> None:
        from outlines_core import Index
        from outlines_core.json_schema import build_regex_from_schema

        self.index = Index(build_regex_from_schema(json.dumps(schema)), self.vocabulary)

    def start(self):
        from outlines_core import Guide

        return Guide(self.index)

    def fill(self, state) -> torch.Tensor:
        from outlines_core.kernels.torch import allocate_token_bitmask, fill_next_token_bitmask

        bitmask = allocate_token_bitmask(self.vocab_size)
        fill_next_token_bitmask(state, bitmask)
        return bitmask[0]

    def advance(self, state, token: int) -> None:
        state.advance(token_id=token, return_tokens=False)


class FormatEnforcer:
    name = "lm-format-enforcer"

    def prepare(self, tokenizer) -> None:
        import sys
        import types

        import transformers

        # lm-format-enforcer 0.11.3 imports transformers.tokenization_utils, which
        # transformers 5 removed; alias it so that the library can be measured at all.
        shim = types.ModuleType("transformers.tokenization_utils")
        shim.PreTrainedTokenizerBase = transformers.PreTrainedTokenizerBase
        sys.modules.setdefault("transformers.tokenization_utils", shim)
        from lmformatenforcer.integrations.transformers import (
            build_token_enforcer_tokenizer_data,
        )

        self.data = build_token_enforcer_tokenizer_data(tokenizer)

    def compile(self, schema: dict) -> None:
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer

        self.schema = schema
        self.enforcer = TokenEnforcer(self.data, JsonSchemaParser(schema))
        self.enforcer.get_allowed_tokens([])  # the parser does its work lazily

    def start(self):
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer

        # The enforcer caches states by token prefix; a fresh one per walk, as every real
        # request (its own prompt) would miss that cache.
        self.enforcer = TokenEnforcer(self.data, JsonSchemaParser(self.schema))
        return []

    def fill(self, state) -> list[int]:
        return self.enforcer.get_allowed_tokens(state).allowed_tokens

    def advance(self, state, token: int) -> None:
        state.append(token)


def walk(lib, ids: list[int], eos: int, vocab: int) -> tuple[bool, float]:
    """Feed `ids` through the library's mask; (accepted, seconds per token for computing
    the mask and advancing the state)."""
    state, spent = lib.start(), 0.0
    for step, token in enumerate([*ids, eos], 1):
        started = time.perf_counter()
        mask = lib.fill(state)
        spent += time.perf_counter() - started
        logits = torch.zeros(vocab)
        apply_mask(logits, mask)
        if logits[token] == float("-inf"):
            return False, spent / step
        if token != eos:
            started = time.perf_counter()
            lib.advance(state, token)
            spent += time.perf_counter() - started
    return True, spent / (len(ids) + 1)


def installed_mb(library: str) -> float:
    total = 0
    for dist in NEW_DISTRIBUTIONS[library]:
        files = importlib.metadata.distribution(dist).files or []
        total += sum(f.locate().stat().st_size for f in files if f.locate().exists())
    return total / 2**20


def measure(lib, tokenizer, vocab: int, repeats: int) -> dict[str, Any]:
    started = time.perf_counter()
    lib.prepare(tokenizer)
    prepare_s = time.perf_counter() - started
    schema = Plan.model_json_schema()
    compile_s = []
    for _ in range(repeats):
        started = time.perf_counter()
        lib.compile(schema)
        compile_s.append(time.perf_counter() - started)
    eos = tokenizer.eos_token_id
    features, per_token = {}, []
    for name, (text, _) in CASES.items():
        ids = tokenizer.encode(text, add_special_tokens=False)
        accepted, _ = walk(lib, ids, eos, vocab)
        features[name] = accepted
    valid_ids = tokenizer.encode(CASES["valid, 8 steps"][0], add_special_tokens=False)
    cold = walk(lib, valid_ids, eos, vocab)[1]  # the first request: lazy imports and states
    for _ in range(repeats):
        per_token.append(walk(lib, valid_ids, eos, vocab)[1])
    return {
        "library": lib.name,
        "version": importlib.metadata.version(NEW_DISTRIBUTIONS[lib.name][0]),
        "installed_mb": installed_mb(lib.name),
        "new_deps": ", ".join(NEW_DISTRIBUTIONS[lib.name][1:]) or "none",
        "prepare_s": prepare_s,
        "compile_ms": 1000 * statistics.median(compile_s),
        "token_ms": 1000 * statistics.median(per_token),
        "cold_token_ms": 1000 * cold,
        "tokens": len(valid_ids) + 1,
        "correct": sum(features[n] == ok for n, (_, ok) in CASES.items()),
        "features": features,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True, help="a transformers model folder")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="", help="comma-separated library names")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    vocab = len(tokenizer)
    libs = [Llguidance(), Xgrammar(), OutlinesCore(), FormatEnforcer()]
    if args.only:
        libs = [lib for lib in libs if lib.name in args.only.split(",")]
    rows = [measure(lib, tokenizer, vocab, args.repeats) for lib in libs]
    print(f"\n{datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, tokenizer {args.tokenizer} ({vocab} tokens), "
          f"median of {args.repeats}\n")  # fmt: skip
    print("| library | installed MB (new deps) | tokenizer prep s | schema compile ms "
          "| ms/token, first request | ms/token (mask+advance) "
          "| schema checks right |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['library']} {r['version']} | {r['installed_mb']:.0f} ({r['new_deps']}) "
              f"| {r['prepare_s']:.2f} | {r['compile_ms']:.1f} | {r['cold_token_ms']:.2f} "
              f"| {r['token_ms']:.2f} "
              f"| {r['correct']}/{len(CASES)} |")  # fmt: skip
    print("\n| case | must pass | " + " | ".join(r["library"] for r in rows) + " |")
    print("|---|---|" + "---|" * len(rows))
    for name, (_, ok) in CASES.items():
        cells = " | ".join("passes" if r["features"][name] else "stopped" for r in rows)
        print(f"| {name} | {'yes' if ok else 'no'} | {cells} |")


if __name__ == "__main__":
    main()

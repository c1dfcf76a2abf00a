"""Decoding under a JSON schema (or a regex) for `local/` models, with llguidance.

A guide that must write a typed strategy is asked for JSON; a small model often writes
something else (a fenced block, prose, a numbered list). Constrained decoding removes that
failure: at every step the tokens that cannot continue a text matching the schema are
masked out, so the completion is valid JSON of the schema's shape whenever it ends by
itself (`finish_reason="stop"`); when `max_tokens` cuts it first the text is what it is
(`finish_reason="length"`).

Why llguidance (the comparison is in docs/benchmarks.md): an 8 MB wheel with no
dependencies (xgrammar pulls triton, about 1 GB, on Linux), no torch.compile, schema
compile in about a millisecond, a mask in a fraction of a millisecond per token on the CPU,
and it enforces what pydantic emits for strategies (minItems/maxItems, minLength/maxLength,
additionalProperties, $defs). It is maintained by the guidance team and is the grammar
engine behind vLLM, SGLang and llama.cpp's structured outputs.

The decode loop sees only the two small protocols of :mod:`gcop.local.engine`
(`TokenConstraint.start()` -> `RowConstraint`), so an engine that cannot mask logits says
so and the provider refuses `response_format` for it with a clear error.
"""

from __future__ import annotations

import functools
import json
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from gcop.errors import GcopError

if TYPE_CHECKING:
    import torch

REQUIREMENT = "llguidance>=1.9"

# Compact-but-readable JSON (json.dumps's own separators): no free whitespace, so that a
# model cannot spend its budget on newlines and a bounded schema gives a bounded output.
# No \u escapes: a lone surrogate escape parses with json.loads but not with pydantic.
JSON_OPTIONS = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
    "json_allowed_escapes": 'nrbtf"\\',
}


class ConstraintError(GcopError, ValueError):
    """A response_format, schema or regex that cannot be decoded under."""


class MissingLibraryError(GcopError, ImportError):
    """A library that a feature needs is not installed (e.g. exectune installed --no-deps)."""


def response_format_for(strategy_type: type[BaseModel]) -> dict[str, Any]:
    """The LiteLLM/OpenAI `response_format` that makes a model write `strategy_type` as JSON.

    Pass it as `litellm.completion(..., response_format=...)` (or in DSPy's lm kwargs):
    API models that support structured outputs decode under it, and `local/` models decode
    under it with llguidance. A `Strategy` type's own `response_format()` is used as it is;
    any other pydantic model gets pydantic's schema. Constraints stated as fields
    (`Field(min_length=2, max_length=8)` on a list, `max_length` on a string) are enforced
    while decoding; those checked only in `Strategy.violations()` are not.
    """
    if not (isinstance(strategy_type, type) and issubclass(strategy_type, BaseModel)):
        raise ConstraintError(
            f"response_format_for takes a pydantic model class (a Strategy type), "
            f"not {strategy_type!r}"
        )
    if callable(own := getattr(strategy_type, "response_format", None)):
        return own()
    spec = {"name": strategy_type.__name__, "schema": strategy_type.model_json_schema()}
    return {"type": "json_schema", "json_schema": spec}


def schema_of(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema a `response_format` asks for; None for plain text.

    Accepts what LiteLLM forwards to a custom provider: `{"type": "json_schema",
    "json_schema": {"schema": {...}}}`, `{"type": "json_object"}`, `{"type": "text"}`, and
    a pydantic model class (LiteLLM itself turns a class into the first form).
    """
    if response_format is None:
        return None
    if isinstance(response_format, type) and issubclass(response_format, BaseModel):
        return response_format.model_json_schema()
    if isinstance(response_format, BaseModel):  # an already-built OpenAI-style object
        response_format = response_format.model_dump(by_alias=True)
    if not isinstance(response_format, dict):
        raise ConstraintError(
            f"response_format must be a dict or a pydantic model class, not "
            f"{type(response_format).__name__}"
        )
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema", spec.get("schema_"))
        if not isinstance(schema, dict):
            raise ConstraintError(
                'response_format {"type": "json_schema"} needs {"json_schema": {"schema": '
                "{...}}} with the schema as a dict"
            )
        return schema
    raise ConstraintError(
        f"unknown response_format type {kind!r}; use 'json_schema', 'json_object' or 'text'"
    )


@dataclass(frozen=True)
class Grammar:
    """A compiled constraint for one tokenizer: start a fresh per-row state with `start()`."""

    tokenizer: Any  # llguidance.LLTokenizer
    grammar: str
    description: str

    def start(self) -> LLGuidanceRow:
        from llguidance import LLMatcher

        matcher = LLMatcher(self.tokenizer, self.grammar, log_level=0)
        return LLGuidanceRow(matcher, self.tokenizer.vocab_size)


class LLGuidanceRow:
    """The state of one decoding row: which tokens may come next, advanced per token."""

    def __init__(self, matcher: Any, vocab_size: int) -> None:
        import llguidance.numpy

        self._matcher = matcher
        self._bitmask = llguidance.numpy.allocate_token_bitmask(1, vocab_size)

    def mask(self, logits: torch.Tensor) -> None:
        """Set the logits of every token the constraint forbids next to -inf, in place."""
        import llguidance.numpy
        import numpy as np

        # The numpy helpers, not llguidance.torch: importing that one builds a
        # torch.compile kernel (about 13 s here, and it needs a C compiler to run). On the
        # CPU the mask is applied in numpy too: a handful of small torch ops per row and
        # token cost 3-60 ms on a loaded 2-core machine (intra-op thread pool waits), numpy
        # 0.3 ms (benchmarks/constrained_gsm8k.py measures it).
        llguidance.numpy.fill_next_token_bitmask(self._matcher, self._bitmask, 0)
        words = self._bitmask[0].astype("<i4", copy=False)  # bit j of word w: token 32w+j
        bits = np.unpackbits(words.view(np.uint8), bitorder="little")
        forbidden = np.ones(logits.shape[-1], dtype=bool)
        width = min(bits.shape[0], logits.shape[-1])
        forbidden[:width] = bits[:width] == 0
        if logits.device.type == "cpu" and logits.is_contiguous():
            logits.numpy()[forbidden] = -np.inf
        else:
            import torch

            logits.masked_fill_(torch.from_numpy(forbidden).to(logits.device), float("-inf"))

    def advance(self, token: int) -> None:
        if not self._matcher.consume_token(token):
            raise ConstraintError(
                f"token {token} does not continue the constrained text: {self._matcher.get_error()}"
            )

    @property
    def finished(self) -> bool:
        """The text is complete and nothing may follow it: the row must end here."""
        return self._matcher.is_stopped()


def json_schema_grammar(tokenizer: Any, schema: dict[str, Any]) -> Grammar:
    """Compile `schema` for `tokenizer` (an llguidance tokenizer from :func:`llg_tokenizer`)."""
    from llguidance import LLMatcher

    if not isinstance(schema, dict):
        raise ConstraintError(f"a JSON schema is a dict, not {type(schema).__name__}")
    text = json.dumps(schema, sort_keys=True)
    grammar = _schema_grammar(text)
    if error := LLMatcher.validate_grammar(grammar, tokenizer):
        raise ConstraintError(
            f"cannot decode under this JSON schema: {error}. Check the schema (pydantic's "
            f"model_json_schema() output is supported); schema: {text[:300]}"
        )
    return Grammar(tokenizer, grammar, f"JSON schema {text[:80]}")


def regex_grammar(tokenizer: Any, pattern: str) -> Grammar:
    """Compile a regular expression (the whole completion must match it)."""
    from llguidance import LLMatcher

    grammar = LLMatcher.grammar_from_regex(pattern)
    if error := LLMatcher.validate_grammar(grammar, tokenizer):
        raise ConstraintError(f"cannot decode under the regex {pattern!r}: {error}")
    return Grammar(tokenizer, grammar, f"regex {pattern[:80]}")


@functools.lru_cache(maxsize=256)
def _schema_grammar(schema_text: str) -> str:
    from llguidance import LLMatcher

    try:
        return LLMatcher.grammar_from_json_schema(schema_text, defaults=JSON_OPTIONS)
    except ValueError as error:
        raise ConstraintError(f"not a JSON schema: {error}") from error


_tokenizers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_tokenizers_lock = threading.Lock()


def llg_tokenizer(hf_tokenizer: Any, eos_token_ids: list[int], vocab_size: int) -> Any:
    """llguidance's view of a Hugging Face tokenizer, built once per tokenizer (about 1 s).

    `eos_token_ids` are the ids that end a completion in the decode loop (the mask allows
    them once the text is complete); `vocab_size` is the model's logits width, which may
    exceed the tokenizer's.
    """
    require()
    import llguidance.hf

    with _tokenizers_lock:
        key = (tuple(sorted(set(eos_token_ids))), vocab_size)
        built = _tokenizers.setdefault(hf_tokenizer, {})
        if key not in built:
            if not getattr(hf_tokenizer, "is_fast", False):
                raise ConstraintError(
                    "constrained decoding needs a fast (Rust) Hugging Face tokenizer; this "
                    "model's tokenizer is a slow one"
                )
            built[key] = llguidance.hf.from_tokenizer(
                hf_tokenizer, n_vocab=max(vocab_size, len(hf_tokenizer)),
                eos_token=sorted(set(eos_token_ids)),
            )  # fmt: skip
        return built[key]


def require() -> None:
    """Raise :class:`MissingLibraryError` with the pip command if llguidance is absent."""
    try:
        import llguidance  # noqa: F401
        import llguidance.hf  # noqa: F401
    except ImportError as error:
        raise MissingLibraryError(
            f"decoding a local model under response_format needs llguidance, which is not "
            f"installed here: pip install '{REQUIREMENT}' ({error})"
        ) from error


def grammar_for(
    response_format: Any, hf_tokenizer: Any, eos_token_ids: list[int], vocab_size: int
) -> Grammar | None:
    """The constraint a request's `response_format` asks for, compiled for one model's
    tokenizer; None when it asks for none (absent, or `{"type": "text"}`)."""
    schema = schema_of(response_format)
    if schema is None:
        return None
    return json_schema_grammar(llg_tokenizer(hf_tokenizer, eos_token_ids, vocab_size), schema)

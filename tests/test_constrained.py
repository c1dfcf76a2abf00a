"""Decoding under a JSON schema: a tiny random model always writes a parseable strategy.

A random model is the worst writer there is: unconstrained it never writes JSON. Under the
schema it must write JSON that parses into the pydantic type every time it ends by itself,
at any temperature and seed, in batches shared with unconstrained rows (which must decode
exactly as they do alone), through the real `litellm.completion` -> `local/` path.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

import litellm
import pytest
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

import gcop  # noqa: F401  (registers local/)
from gcop.local import MODELS
from gcop.local.constrained import ConstraintError, grammar_for, response_format_for, schema_of
from gcop.local.engine import GenerationRequest
from gcop.local.provider import prompt_ids

MESSAGES = [{"role": "user", "content": "Write a plan: what is 3 plus 4?"}]
MAX_TOKENS = 1200  # above the schema's bound: 8 steps x 30 characters x 4 bytes + syntax


class Plan(BaseModel):
    """A strategy-like type: its constraints are pydantic fields, so the schema carries them."""

    model_config = ConfigDict(extra="forbid")
    steps: list[Annotated[str, StringConstraints(min_length=1, max_length=30)]] = Field(
        min_length=2, max_length=8
    )


def response_format_of(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


def complete(model: str, **params):
    return litellm.completion(model=model, messages=MESSAGES, **params)


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.0, 1.5])
def test_constrained_decoding_always_yields_the_type(tiny_model: str, temperature: float) -> None:
    model = f"local/{tiny_model}"
    free = complete(model, max_tokens=40, temperature=temperature, n=4, seed=11)
    assert not any(_parses(c.message.content) for c in free.choices)  # the model is random
    for seed in range(3):
        response = complete(model, max_tokens=MAX_TOKENS, temperature=temperature, n=4,
                            seed=seed, response_format=response_format_for(Plan))  # fmt: skip
        for choice in response.choices:
            assert choice.finish_reason == "stop", choice.message.content
            plan = Plan.model_validate_json(choice.message.content)
            assert 2 <= len(plan.steps) <= 8
        assert response.usage.completion_tokens < 4 * MAX_TOKENS


def test_math_plan_response_format_through_local(tiny_model: str) -> None:
    """The strategy type's own response_format (strict, as the Guide sends it) decodes into
    that type; MathPlan states no length limits, so greedy decoding (deterministic) is used."""
    from gcop.programs.math import MathPlan

    assert response_format_for(MathPlan) == MathPlan.response_format()
    response = complete(f"local/{tiny_model}", max_tokens=400, temperature=0,
                        response_format=MathPlan.response_format())  # fmt: skip
    assert response.choices[0].finish_reason == "stop"
    assert MathPlan.model_validate_json(response.choices[0].message.content).steps


def test_response_format_forms_litellm_forwards(tiny_model: str) -> None:
    """A pydantic class, a json_schema dict and json_object all reach the provider."""
    model = f"local/{tiny_model}"
    for response_format in (Plan, response_format_for(Plan)):
        text = complete(model, max_tokens=MAX_TOKENS, temperature=1.0, seed=5,
                        response_format=response_format).choices[0].message.content  # fmt: skip
        Plan.model_validate_json(text)
    text = complete(model, max_tokens=MAX_TOKENS, temperature=1.0, seed=5,
                    response_format={"type": "json_object"}).choices[0].message.content  # fmt: skip
    assert text.startswith("{")
    plain = complete(model, max_tokens=12, temperature=0, response_format={"type": "text"})
    assert plain.choices[0].message.content == complete(model, max_tokens=12, temperature=0)\
        .choices[0].message.content  # fmt: skip


def test_mixed_batches_mask_only_their_own_rows(tiny_model: str) -> None:
    """Constrained and free rows in one batch each decode exactly as they do alone."""
    loaded = MODELS.get(f"{tiny_model}?engine=torch")  # the loop that takes grammars
    ids = prompt_ids(loaded.tokenizer, MESSAGES)
    eos = loaded.generator.eos_token_ids.tolist()
    grammar = grammar_for(Plan, loaded.tokenizer, eos, len(loaded.tokenizer))
    requests = [
        GenerationRequest(ids, max_new_tokens=MAX_TOKENS, temperature=1.0, seed=1,
                          constraint=grammar),
        GenerationRequest(ids, max_new_tokens=30, temperature=1.0, seed=2),
        GenerationRequest(ids[:5], max_new_tokens=MAX_TOKENS, temperature=0.0,
                          constraint=grammar),
        GenerationRequest(ids, max_new_tokens=30, temperature=0.0),
    ]  # fmt: skip
    batched = loaded.generator.generate(requests)
    alone = [loaded.generator.generate([r])[0] for r in requests]
    assert [r.token_ids for r in batched] == [r.token_ids for r in alone]
    texts = [loaded.tokenizer.decode(r.token_ids, skip_special_tokens=True) for r in batched]
    Plan.model_validate_json(texts[0])
    Plan.model_validate_json(texts[2])
    assert not _parses(texts[1]) and not _parses(texts[3])
    assert [r.finish_reason for r in batched] == ["stop", "length", "stop", "length"]


def test_concurrent_constrained_and_free_requests(tiny_model: str) -> None:
    """Through litellm from many threads: shared batches, constrained rows parse, free rows
    are what they are when sent alone."""
    model = f"local/{tiny_model}"

    def call(i: int) -> str:
        extra = {"response_format": response_format_for(Plan)} if i % 2 else {}
        tokens = MAX_TOKENS if i % 2 else 20
        return complete(model, max_tokens=tokens, temperature=1.0, seed=100 + i,
                        **extra).choices[0].message.content  # fmt: skip

    generator = MODELS.get(tiny_model).generator
    before = generator.batches_run
    with ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(call, range(8)))
    assert generator.batches_run - before < 8  # requests shared batches
    for i, text in enumerate(texts):
        if i % 2:
            Plan.model_validate_json(text)
        else:
            assert text == call(i)


def test_max_tokens_cuts_the_json_and_says_length(tiny_model: str) -> None:
    response = complete(f"local/{tiny_model}", max_tokens=6, temperature=1.0, seed=3,
                        response_format=response_format_for(Plan))  # fmt: skip
    choice = response.choices[0]
    assert choice.finish_reason == "length"
    assert response.usage.completion_tokens == 6
    assert choice.message.content.startswith('{"steps": [')
    assert not _parses(choice.message.content)


def test_regex_constraint_and_ends_when_complete(tiny_model: str) -> None:
    """A regex constrains too; once the text is complete the row ends (forced EOS)."""
    from gcop.local.constrained import llg_tokenizer, regex_grammar

    loaded = MODELS.get(f"{tiny_model}?engine=torch")  # the loop that takes grammars
    eos = loaded.generator.eos_token_ids.tolist()
    grammar = regex_grammar(llg_tokenizer(loaded.tokenizer, eos, len(loaded.tokenizer)),
                            r"(add|subtract) [0-9]{1,3}")  # fmt: skip
    ids = prompt_ids(loaded.tokenizer, MESSAGES)
    for seed in range(4):
        request = GenerationRequest(ids, max_new_tokens=50, temperature=1.5, seed=seed,
                                    constraint=grammar)  # fmt: skip
        result = loaded.generator.generate([request])[0]
        text = loaded.tokenizer.decode(result.token_ids, skip_special_tokens=True)
        assert result.finish_reason == "stop"
        assert text.split(" ")[0] in ("add", "subtract") and text.split(" ")[1].isdigit()
        assert len(text.split(" ")[1]) <= 3


@pytest.mark.parametrize(
    ("response_format", "message"),
    [
        (response_format_of({"type": "strin"}), "Invalid type"),
        (response_format_of({"type": "array", "minItems": 5, "maxItems": 2}), "Unsatisfiable"),
        ({"type": "json_schema", "json_schema": {}}, "needs"),
        ({"type": "yaml"}, "unknown response_format type"),
    ],
)
def test_bad_schema_is_a_clear_error(tiny_model: str, response_format, message: str) -> None:
    with pytest.raises(litellm.BadRequestError, match=message):
        complete(f"local/{tiny_model}", max_tokens=5, response_format=response_format)


def test_async_path_and_engines_without_masks(tiny_model: str) -> None:
    """acompletion honours response_format; an engine that cannot mask logits refuses it."""
    import asyncio

    model = f"local/{tiny_model}"
    response = asyncio.run(litellm.acompletion(
        model=model, messages=MESSAGES, max_tokens=MAX_TOKENS, temperature=1.0, seed=9,
        response_format=response_format_for(Plan)))  # fmt: skip
    Plan.model_validate_json(response.choices[0].message.content)
    ct2 = f"{model}?engine=ct2"  # asked for by name, an engine without masks refuses it
    with pytest.raises(litellm.BadRequestError, match="not served by engine=ct2"):
        complete(ct2, max_tokens=5, response_format=response_format_for(Plan))
    assert complete(ct2, max_tokens=5).choices  # without response_format it still serves


def test_schema_of_and_response_format_for() -> None:
    assert schema_of(None) is None and schema_of({"type": "text"}) is None
    assert schema_of({"type": "json_object"}) == {"type": "object"}
    assert schema_of(response_format_for(Plan)) == Plan.model_json_schema()
    assert schema_of(response_format_for(Plan))["properties"]["steps"]["maxItems"] == 8
    with pytest.raises(ConstraintError, match="pydantic model class"):
        response_format_for({"steps": []})


def test_missing_library_names_the_install(tiny_model: str) -> None:
    """Without llguidance, response_format fails with the pip command; plain calls work."""
    script = f"""
import os, sys
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
sys.modules["llguidance"] = None  # as if not installed: importing it raises ImportError
import litellm
import gcop.local.provider  # registers the local/ provider with LiteLLM
messages = [{{"role": "user", "content": "hi"}}]
model = "local/{tiny_model}"
assert litellm.completion(model=model, messages=messages, max_tokens=3).choices
try:
    litellm.completion(model=model, messages=messages, max_tokens=3,
                       response_format={{"type": "json_object"}})
except litellm.BadRequestError as error:
    print(error)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=True)  # fmt: skip
    assert "pip install 'llguidance>=1.9'" in done.stdout, done.stdout + done.stderr


def _parses(text: str) -> bool:
    try:
        Plan.model_validate_json(text)
        return True
    except ValueError:
        return False

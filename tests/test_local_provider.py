"""The local/ provider: a tiny real transformer served through litellm.completion, on each
engine (the torch loop and CTranslate2, converted in the test)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import litellm
import pytest
import torch

import gcop.local.provider  # noqa: F401  (registers the local/ provider with LiteLLM)
from gcop.errors import ModelNotFoundError, ModelStringError
from gcop.lm import check_model
from gcop.local import MODELS, adapter_spec, pricing

MESSAGES = [{"role": "user", "content": "What is 3 plus 4?"}]
ENGINES = ["torch", "ct2"]


def complete(model: str, **params):
    return litellm.completion(model=model, messages=MESSAGES, **params)


@pytest.mark.parametrize("engine", ENGINES)
def test_completion_reports_usage_and_cost(tiny_model: str, engine: str) -> None:
    model = f"local/{tiny_model}?engine={engine}"
    response = complete(model, max_tokens=7, temperature=0)
    usage = response.usage
    assert usage.prompt_tokens > 5
    assert 1 <= usage.completion_tokens <= 7
    assert response.choices[0].finish_reason in ("stop", "length")
    params = MODELS.get(model).params
    assert params == MODELS.get(f"local/{tiny_model}?engine=torch").params  # one price
    rate_in, rate_out = pricing.price_of(model, params)
    expected = (usage.prompt_tokens * rate_in + usage.completion_tokens * rate_out) / 1e6
    assert litellm.completion_cost(completion_response=response) == pytest.approx(expected)


@pytest.mark.parametrize("engine", ENGINES)
def test_greedy_is_deterministic_and_seeds_reproduce_samples(tiny_model: str, engine) -> None:
    model = f"local/{tiny_model}?engine={engine}"
    greedy = {complete(model, max_tokens=12, temperature=0).choices[0].message.content
              for _ in range(2)}  # fmt: skip
    assert len(greedy) == 1
    first = complete(model, max_tokens=12, temperature=1.0, n=3, seed=7)
    again = complete(model, max_tokens=12, temperature=1.0, n=3, seed=7)
    other = complete(model, max_tokens=12, temperature=1.0, n=3, seed=8)
    texts = [c.message.content for c in first.choices]
    assert len(first.choices) == 3 and [c.index for c in first.choices] == [0, 1, 2]
    assert texts == [c.message.content for c in again.choices]
    assert texts != [c.message.content for c in other.choices]
    assert len(set(texts)) > 1  # n samples are different samples


@pytest.mark.parametrize("engine", ENGINES)
def test_concurrent_requests_are_decoded_in_batches(tiny_model: str, engine: str) -> None:
    model = f"local/{tiny_model}?engine={engine}"
    generator = MODELS.get(model).generator
    before = generator.batches_run
    with ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(
            lambda i: complete(model, max_tokens=10, temperature=1.0)
            .choices[0].message.content, range(8)))  # fmt: skip
    assert len(texts) == 8
    assert generator.batches_run - before < 8  # requests shared batches


def test_batched_rows_match_single_decoding(tiny_model: str) -> None:
    """Per-row seeds and budgets: a request decodes the same alone or inside a batch."""
    from gcop.local.engine import GenerationRequest
    from gcop.local.provider import prompt_ids

    loaded = MODELS.get(f"local/{tiny_model}?engine=torch")
    ids = prompt_ids(loaded.tokenizer, MESSAGES)
    short = prompt_ids(loaded.tokenizer, [{"role": "user", "content": "Hi"}])
    requests = [
        GenerationRequest(ids, max_new_tokens=9, temperature=1.0, seed=3),
        GenerationRequest(short, max_new_tokens=4, temperature=0.0),
        GenerationRequest(ids, max_new_tokens=12, temperature=0.7, top_p=0.9, seed=4),
    ]
    batched = loaded.generator.generate(requests)
    alone = [loaded.generator.generate([r])[0] for r in requests]
    assert all(len(r.token_ids) <= q.max_new_tokens for r, q in zip(batched, requests, strict=True))
    assert [r.token_ids for r in batched] == [r.token_ids for r in alone]


def test_lora_adapter_changes_the_model(tiny_model: str, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 2.0)  # a trained adapter is not the identity
    peft_model.save_pretrained(tmp_path / "adapter")
    with_adapter = adapter_spec(tiny_model, tmp_path / "adapter")
    check_model(with_adapter)
    plain = complete(f"local/{tiny_model}?engine=torch", max_tokens=10, temperature=0).choices[0]
    adapted = complete(with_adapter, max_tokens=10, temperature=0).choices[0]
    assert plain.message.content != adapted.message.content
    assert MODELS.get(with_adapter).engine == "torch"  # live LoRA: the automatic choice


@pytest.mark.parametrize(
    ("model", "error", "message"),
    [
        ("smollm2", ModelStringError, "provider/model"),
        ("local/no-such-model-anywhere", ModelNotFoundError, "gcop models pull"),
        ("local/missing.gguf", ModelNotFoundError, "no GGUF file"),
        ("local/smollm2-135m-instruct?engine=vllm", ModelStringError, "unknown engine"),
        ("nosuchprovider/x", ModelStringError, "provider"),
    ],
)
def test_bad_model_strings_fail_before_any_call(model: str, error, message: str) -> None:
    with pytest.raises(error, match=message):
        check_model(model)


def test_a_local_price_is_read_without_loading_the_model(tiny_model: str, tmp_path: Path) -> None:
    """The RL reward prices the guide the trainer holds: reading the price must not load a
    second copy, and must be the price a real call is then charged at."""
    from gcop.local import price_per_token
    from tests.test_engines import _adapter

    with_adapter = adapter_spec(tiny_model, _adapter(tiny_model, tmp_path / "adapter"))
    MODELS.unload()
    rate_in, rate_out = price_per_token(with_adapter)
    assert MODELS.engines() == {} and rate_in > 0 and rate_out > rate_in
    response = complete(with_adapter, max_tokens=5, temperature=0)
    usage = response.usage
    expected = usage.prompt_tokens * rate_in + usage.completion_tokens * rate_out
    assert litellm.completion_cost(completion_response=response) == pytest.approx(expected)

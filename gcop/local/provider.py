"""The `local/` LiteLLM provider: Hugging Face causal LMs served in-process.

`litellm.completion(model="local/<spec>", messages=...)` loads the model once per process
(see :mod:`gcop.local.registry` for what `<spec>` may be; append `?adapter=<dir>` for a
LoRA adapter), applies its chat template, and decodes through one
:class:`~gcop.local.engine.BatchedGenerator` per model, so that concurrent calls from
many threads are decoded as one batch. Usage is reported like any API model's, and each
model is registered with LiteLLM at a price (see :mod:`gcop.local.pricing`), so cost flows
through LiteLLM and DSPy unchanged.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import litellm
from litellm import CustomLLM, ModelResponse
from litellm.types.utils import Choices, Message, Usage

from gcop.local import constrained, pricing
from gcop.local.engine import BatchedGenerator, GenerationRequest
from gcop.local.registry import resolve

PROVIDER = "local"


@dataclass
class LoadedModel:
    """A model, its tokenizer and its batching generator."""

    spec: str
    model: Any
    tokenizer: Any
    generator: BatchedGenerator
    params: int


def split_spec(spec: str) -> tuple[str, str | None]:
    """`base?adapter=dir` -> (base, dir)."""
    base, _, query = spec.partition("?")
    adapter = None
    for part in filter(None, query.split("&")):
        key, _, value = part.partition("=")
        if key != "adapter":
            raise litellm.BadRequestError(
                f"unknown option {key!r} in local model {spec!r}; only ?adapter=<dir> is known",
                model=spec, llm_provider=PROVIDER,
            )  # fmt: skip
        adapter = value
    return base, adapter


class LocalModels:
    """Process-wide registry of loaded local models (each loaded once, on first use)."""

    def __init__(self) -> None:
        self._loaded: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()
        self.max_batch_size = int(os.environ.get("GCOP_LOCAL_MAX_BATCH", "32"))

    def get(self, spec: str) -> LoadedModel:
        with self._lock:
            if spec not in self._loaded:
                self._loaded[spec] = self._load(spec)
            return self._loaded[spec]

    def unload(self, spec: str | None = None) -> None:
        with self._lock:
            if spec is None:
                self._loaded.clear()
            else:
                self._loaded.pop(spec, None)

    def _load(self, spec: str) -> LoadedModel:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        base, adapter = split_spec(spec)
        source = resolve(base)
        tokenizer = AutoTokenizer.from_pretrained(source)
        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        if torch.cuda.is_available():
            model = model.to("cuda")
        model.eval()
        eos = _eos_ids(model, tokenizer)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
        params = sum(p.numel() for p in model.parameters())
        generator = BatchedGenerator(
            model, eos, pad, decode=tokenizer.decode, max_batch_size=self.max_batch_size
        )
        pricing.register(f"{PROVIDER}/{spec}", params)
        return LoadedModel(spec, model, tokenizer, generator, params)


def _eos_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id if model.generation_config else None
    ids = ids if isinstance(ids, list) else [ids] if ids is not None else []
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise ValueError("the model defines no end-of-sequence token; set eos_token_id")
    return ids


MODELS = LocalModels()


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of `messages` under the model's chat template (plain text if it has none)."""
    if tokenizer.chat_template:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
    text = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\n\nassistant:"
    return tokenizer(text)["input_ids"]


class LocalProvider(CustomLLM):
    """LiteLLM handler for `local/...` model strings."""

    def completion(self, model: str, messages: list, *args, **kwargs) -> ModelResponse:
        optional = dict(kwargs.get("optional_params") or {})
        response = kwargs.get("model_response") or ModelResponse()
        return self._complete(model, messages, optional, response)

    async def acompletion(self, model: str, messages: list, *args, **kwargs) -> ModelResponse:
        optional = dict(kwargs.get("optional_params") or {})
        response = kwargs.get("model_response") or ModelResponse()
        return await asyncio.to_thread(self._complete, model, messages, optional, response)

    def _complete(
        self, model: str, messages: list, optional: dict, response: ModelResponse
    ) -> ModelResponse:
        spec = model.removeprefix(f"{PROVIDER}/")
        loaded = MODELS.get(spec)
        ids = prompt_ids(loaded.tokenizer, messages)
        n = int(optional.get("n") or 1)
        max_new = int(optional.get("max_tokens") or optional.get("max_completion_tokens") or 256)
        temperature = float(optional.get("temperature") or 0.0)
        top_p = float(optional.get("top_p") or 1.0)
        seed = optional.get("seed")
        stops = optional.get("stop") or []
        stops = tuple([stops] if isinstance(stops, str) else stops)
        constraint = _constraint(loaded, optional.get("response_format"))
        futures = [
            loaded.generator.submit(
                GenerationRequest(
                    prompt_ids=ids,
                    max_new_tokens=max_new,
                    temperature=temperature,
                    top_p=top_p,
                    seed=None if seed is None else int(seed) * 1_000_003 + i,
                    stop=stops,
                    constraint=constraint,
                )
            )
            for i in range(n)
        ]
        results = [f.result() for f in futures]
        choices = []
        for i, result in enumerate(results):
            text = loaded.tokenizer.decode(result.token_ids, skip_special_tokens=True)
            finish = result.finish_reason
            for stop in stops:  # stop strings are applied to the decoded text
                if stop and stop in text:
                    text, finish = text.split(stop, 1)[0], "stop"
            choices.append(
                Choices(
                    index=i, finish_reason=finish, message=Message(content=text, role="assistant")
                )
            )
        response.choices = choices
        response.model = f"{PROVIDER}/{spec}"
        response.id = f"local-{uuid.uuid4().hex}"
        response.created = int(time.time())
        completion_tokens = sum(len(r.token_ids) for r in results)
        response.usage = Usage(
            prompt_tokens=len(ids),
            completion_tokens=completion_tokens,
            total_tokens=len(ids) + completion_tokens,
        )
        return response


def _constraint(loaded: LoadedModel, response_format: Any):
    """Compile `response_format` for this model, or refuse it with an error that says why.

    Errors are litellm.BadRequestError: LiteLLM passes it on unchanged (any other exception
    becomes an APIConnectionError, which LiteLLM and DSPy retry), and keeps the message.
    """
    try:
        if constrained.schema_of(response_format) is None:
            return None
        if not getattr(loaded.generator, "supports_constraints", False):
            raise constrained.ConstraintError(
                f"local model {loaded.spec!r} runs on an engine that cannot decode under "
                f"response_format ({type(loaded.generator).__name__}); use the transformers "
                "engine or drop response_format"
            )
        eos = [int(t) for t in loaded.generator.eos_token_ids.tolist()]
        width = loaded.model.get_output_embeddings().weight.shape[0]
        return constrained.grammar_for(response_format, loaded.tokenizer, eos, width)
    except (constrained.ConstraintError, constrained.MissingLibraryError) as error:
        raise litellm.BadRequestError(
            str(error), model=loaded.spec, llm_provider=PROVIDER
        ) from error


def register() -> None:
    """Register the `local` provider with LiteLLM (idempotent)."""
    entries = [e for e in litellm.custom_provider_map if e.get("provider") != PROVIDER]
    litellm.custom_provider_map = [*entries, {"provider": PROVIDER, "custom_handler": HANDLER}]
    from litellm.utils import custom_llm_setup

    custom_llm_setup()


HANDLER = LocalProvider()


def adapter_spec(base: str, adapter: str | Path) -> str:
    """The `local/` model string for `base` with a LoRA adapter."""
    return f"{PROVIDER}/{base}?adapter={Path(adapter).resolve()}"

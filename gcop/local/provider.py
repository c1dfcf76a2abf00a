"""The `local/` LiteLLM provider: Hugging Face causal LMs served in-process.

`litellm.completion(model="local/<model>[?adapter=<dir>][&engine=<torch|ct2>]", ...)`
loads the model once per process (see :mod:`gcop.local.spec` for the string,
:mod:`gcop.local.registry` for what `<model>` may be, :mod:`gcop.local.engines` for the
engine choice), applies its chat template, and decodes through one batching generator
per model (:class:`~gcop.local.engine.BatchedGenerator` for torch,
:class:`~gcop.local.ct2.Ct2Generator` for CTranslate2), so that concurrent calls from
many threads are decoded as one batch. Usage is reported like any API model's, and each
model string is registered with LiteLLM at a price (see :mod:`gcop.local.pricing`), so
cost flows through LiteLLM and DSPy unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import math
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

from gcop.local import constrained, ct2, pricing
from gcop.local.ct2 import Ct2ConversionError, Ct2Generator
from gcop.local.engine import BatchedGenerator, GenerationRequest
from gcop.local.engines import choose_engine
from gcop.local.registry import resolve
from gcop.local.spec import Engine, LocalModelSpec

PROVIDER = "local"
log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model, its tokenizer and the generator that decodes for it."""

    spec: LocalModelSpec
    engine: Engine
    tokenizer: Any
    generator: BatchedGenerator | Ct2Generator
    params: int
    model: Any = None
    """The torch model (torch engine) or the `ctranslate2.Generator` (ct2 engine)."""


class LocalModels:
    """Process-wide registry of loaded local models (each loaded once, on first use).

    Keyed by the spec with its engine resolved, so `local/x` and `local/x?engine=ct2`
    share one loaded model when the automatic choice is ct2."""

    def __init__(self) -> None:
        self._loaded: dict[LocalModelSpec, LoadedModel] = {}
        self._lock = threading.Lock()
        self.max_batch_size = int(os.environ.get("GCOP_LOCAL_MAX_BATCH", "32"))

    def get(self, spec: str | LocalModelSpec) -> LoadedModel:
        spec = spec if isinstance(spec, LocalModelSpec) else LocalModelSpec.parse(spec)
        with self._lock:
            key = spec.with_engine(choose_engine(spec))
            if key not in self._loaded:
                self._loaded[key] = self._load(key, automatic=spec.engine is None)
            return self._loaded[key]

    def engines(self) -> dict[str, str]:
        """Each loaded copy (its model string with the engine chosen for it) -> the engine
        serving it (torch when a ct2 conversion failed): what a report should record, since
        the automatic choice differs between machines."""
        with self._lock:
            return {str(spec): loaded.engine for spec, loaded in self._loaded.items()}

    def unload(self, spec: str | LocalModelSpec | None = None) -> None:
        """Forget `spec` (every engine's copy unless it names one), or every model."""
        with self._lock:
            if spec is None:
                self._loaded.clear()
                return
            spec = spec if isinstance(spec, LocalModelSpec) else LocalModelSpec.parse(spec)
            for key in list(self._loaded):
                if key.with_engine(None) == spec.with_engine(None) and spec.engine in (
                    None,
                    key.engine,
                ):
                    del self._loaded[key]

    def _load(self, spec: LocalModelSpec, automatic: bool) -> LoadedModel:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        source = resolve(spec.model)
        tokenizer = AutoTokenizer.from_pretrained(source)
        if spec.engine == "ct2":
            try:
                return self._load_ct2(spec, source, tokenizer)
            except Ct2ConversionError as error:
                if not automatic:
                    raise
                log.warning("%s; serving %s with the torch loop", error, spec.model)
        return self._load_torch(spec.with_engine("torch"), source, tokenizer)

    def _load_torch(self, spec: LocalModelSpec, source, tokenizer) -> LoadedModel:
        import torch
        from transformers import AutoModelForCausalLM

        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
        if spec.adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, spec.adapter).merge_and_unload()
        if torch.cuda.is_available():
            model = model.to("cuda")
        model.eval()
        eos = _eos_ids(model.generation_config, tokenizer)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
        params = sum(p.numel() for p in model.parameters())
        generator = BatchedGenerator(
            model, eos, pad, decode=tokenizer.decode, max_batch_size=self.max_batch_size
        )
        return LoadedModel(spec, "torch", tokenizer, generator, params, model)

    def _load_ct2(self, spec: LocalModelSpec, source, tokenizer) -> LoadedModel:
        from transformers import GenerationConfig

        folder = ct2.converted(source, spec.adapter)
        try:
            generation_config = GenerationConfig.from_pretrained(source)
        except OSError:  # a checkpoint without generation_config.json
            generation_config = None
        generator = Ct2Generator(
            folder, _eos_ids(generation_config, tokenizer), tokenizer.convert_ids_to_tokens,
            decode=tokenizer.decode, max_batch_size=self.max_batch_size,
        )  # fmt: skip
        params = _count_params(source)
        return LoadedModel(spec, "ct2", tokenizer, generator, params, generator.model)


def price_per_token(model: str) -> tuple[float, float]:
    """(input, output) dollars per token of a local model string, at the price it is
    registered with when loaded, read from its checkpoint's headers: nothing is loaded.

    For callers that need a price without a call: the RL reward prices the guide while the
    trainer holds it, and a one-token call for the price loaded a second, merged fp32 copy
    of a 1.5B guide (7 GB) that stayed resident through the whole RL run."""
    spec = LocalModelSpec.parse(model)
    rate_in, rate_out = pricing.price_of(model, _count_params(resolve(spec.model)))
    return rate_in / 1e6, rate_out / 1e6


def _count_params(source) -> int:
    """Parameters of a checkpoint, from its safetensors headers (no weights are read), so
    that a ct2 model is priced like the same model on the torch loop."""
    from safetensors import safe_open

    folder = Path(source)
    if not folder.is_dir():  # a hub id: the files the converter downloaded
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(str(source), allow_patterns=["*.safetensors"]))
    total = 0
    for file in folder.glob("*.safetensors"):
        with safe_open(file, framework="numpy") as weights:
            for name in weights.keys():  # noqa: SIM118 (safe_open is not a mapping)
                total += math.prod(weights.get_slice(name).get_shape())
    return total


def _eos_ids(generation_config, tokenizer) -> list[int]:
    ids = generation_config.eos_token_id if generation_config else None
    ids = list(ids) if isinstance(ids, list) else [ids] if ids is not None else []
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise ValueError("the model defines no end-of-sequence token; set eos_token_id")
    return ids


MODELS = LocalModels()
_priced: set[str] = set()


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
        name = f"{PROVIDER}/{model.removeprefix(f'{PROVIDER}/')}"
        loaded = MODELS.get(_engine_for_request(LocalModelSpec.parse(name), optional))
        if name not in _priced:  # each string the model is called by carries its price
            pricing.register(name, loaded.params)
            _priced.add(name)
        ids = prompt_ids(loaded.tokenizer, messages)
        n = int(_given(optional, "n", default=1))
        max_new = int(_given(optional, "max_tokens", "max_completion_tokens", default=256))
        temperature = float(optional.get("temperature") or 0.0)
        top_p = float(optional.get("top_p") or 1.0)
        seed = optional.get("seed")
        stops = optional.get("stop") or []
        stops = tuple([stops] if isinstance(stops, str) else stops)
        if max_new < 1 or n < 1:
            raise litellm.BadRequestError(
                f"max_tokens={max_new} and n={n} must both be at least 1",
                model=name, llm_provider=PROVIDER,
            )  # fmt: skip
        constraint = _constraint(loaded, optional.get("response_format"))
        futures = loaded.generator.submit_n(
            GenerationRequest(
                prompt_ids=ids,
                max_new_tokens=max_new,
                temperature=temperature,
                top_p=top_p,
                seed=None if seed is None else int(seed),
                stop=stops,
                constraint=constraint,
            ),
            n,
        )
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
        response.model = name
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
                f"local model {loaded.spec.format()!r} runs on an engine that cannot decode under "
                f"response_format ({type(loaded.generator).__name__}); use the transformers "
                "engine or drop response_format"
            )
        eos = [int(t) for t in loaded.generator.eos_token_ids.tolist()]
        width = loaded.model.get_output_embeddings().weight.shape[0]
        return constrained.grammar_for(response_format, loaded.tokenizer, eos, width)
    except (constrained.ConstraintError, constrained.MissingLibraryError) as error:
        raise litellm.BadRequestError(
            str(error), model=loaded.spec.format(), llm_provider=PROVIDER
        ) from error


def _engine_for_request(spec: LocalModelSpec, optional: dict) -> LocalModelSpec:
    """JSON-schema decoding (`response_format`) is done by the torch loop's sampler, so a
    request that asks for it is served there when the engine was left to the automatic
    choice, and refused (not silently unconstrained) when ct2 was asked for."""
    if optional.get("response_format") is None:
        return spec
    if spec.engine == "ct2":
        raise litellm.BadRequestError(
            f"response_format (schema-constrained decoding) is not served by engine=ct2; "
            f"use {spec.with_engine('torch').format()} or leave the engine unset",
            model=spec.format(), llm_provider=PROVIDER,
        )  # fmt: skip
    return spec.with_engine("torch")


def _given(optional: dict, *keys: str, default: int) -> int:
    """The first of `keys` that was given (0 included: it is refused, not replaced)."""
    return next((optional[k] for k in keys if optional.get(k) is not None), default)


def register() -> None:
    """Register the `local` provider with LiteLLM (idempotent)."""
    entries = [e for e in litellm.custom_provider_map if e.get("provider") != PROVIDER]
    litellm.custom_provider_map = [*entries, {"provider": PROVIDER, "custom_handler": HANDLER}]
    from litellm.utils import custom_llm_setup

    custom_llm_setup()


HANDLER = LocalProvider()
register()  # importing the provider is what makes `local/` model strings work in LiteLLM

"""`GcopLM`: a DSPy LM whose every call goes through gcop's call cache and cost ledger.

DSPy's own cache is switched off for these LMs: ours is the single layer, so that guide,
core and teacher calls share one store, one key scheme (with the sample index) and one
ledger. The request itself still goes through `litellm.completion`, so any LiteLLM model
string works, `local/...` included.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
import litellm  # noqa: E402

from gcop.calls import CallCache, default_cache  # noqa: E402
from gcop.errors import ModelStringError  # noqa: E402
from gcop.local import register as _register_local_provider  # noqa: E402

litellm.suppress_debug_info = True
_register_local_provider()  # `local/...` models: gcop's in-process LiteLLM provider
# DSPy 3.4 deprecates BaseLM.forward in favour of typed engines (removed in 3.5; the
# dependency is pinned below that). The forward contract is what lets our cache sit
# between DSPy and LiteLLM with the sample index DSPy passes as `rollout_id`.
warnings.filterwarnings("ignore", message=r"Implementing custom LMs through BaseLM\.forward")


def check_model_string(model: str) -> str:
    """`provider/model`, as LiteLLM spells it; raise a one-line fix otherwise."""
    if not isinstance(model, str) or "/" not in model.strip("/") or model != model.strip():
        raise ModelStringError(
            f"model {model!r} is not a 'provider/model' string; "
            "use e.g. 'local/smollm2-135m-instruct' or 'openai/gpt-4o-mini'"
        )
    return model


_model_slots: dict[str, threading.BoundedSemaphore | None] = {}
"""Per model string, process-wide: at most this many requests in flight (remote models
default to 16; local ones are unlimited since their batcher wants many at once)."""


class GcopLM(dspy.BaseLM):
    """A `dspy.BaseLM` over LiteLLM with gcop's cache and ledger.

    Args:
        model: any LiteLLM model string (`local/<name-or-path>` for in-process models).
        cache: the call cache to use; default: the process-wide one (`$GCOP_HOME/calls`).
        max_concurrency: requests in flight to this model at once, shared by every GcopLM of
            the same model string in the process (default 16 for remote models).
        temperature, max_tokens, **kwargs: default request parameters.
    """

    def __init__(
        self,
        model: str,
        *,
        cache: CallCache | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
        num_retries: int = 3,
        max_concurrency: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            model=check_model_string(model),
            model_type="chat",
            temperature=temperature,
            max_tokens=max_tokens,
            cache=False,
            num_retries=num_retries,
            **kwargs,
        )
        self.call_cache = cache
        if max_concurrency is not None or model not in _model_slots:
            limit = max_concurrency or (None if model.startswith("local/") else 16)
            _model_slots[model] = threading.BoundedSemaphore(limit) if limit else None

    def forward(self, prompt=None, messages=None, **kwargs):
        messages = messages or [{"role": "user", "content": prompt}]
        params = {**self.kwargs, **kwargs}
        rollout_id = params.pop("rollout_id", None)
        params.pop("cache", None)
        cache = self.call_cache or default_cache()

        def compute() -> tuple[dict[str, Any], float]:
            with _model_slots.get(self.model) or contextlib.nullcontext():
                response = litellm.completion(
                    model=self.model, messages=messages, num_retries=self.num_retries, **params
                )
            return response.model_dump(), _response_cost(response)

        data, record = cache.call(
            self.model, messages, params, rollout_id=rollout_id, compute=compute
        )
        response = litellm.ModelResponse(**data)
        response._hidden_params["response_cost"] = record.cost
        response.cache_hit = record.cached
        return response

    def dump_state(self) -> dict[str, Any]:
        state = super().dump_state()
        state.pop("api_key", None)
        return state


def _response_cost(response) -> float:
    """LiteLLM's price for the response; 0.0 for a model LiteLLM has no price for."""
    try:
        return float(litellm.completion_cost(completion_response=response) or 0.0)
    except Exception:  # litellm raises a bare Exception for unmapped models
        return 0.0


def check_model(model: str) -> str:
    """Fail before any money is spent: a malformed string, an unknown provider, a missing
    local model. Local models are resolved (and registered ones pulled) here."""
    check_model_string(model)
    provider, _, name = model.partition("/")
    if provider == "local":
        from gcop.local.engines import require_engine
        from gcop.local.registry import resolve
        from gcop.local.spec import LocalModelSpec

        spec = LocalModelSpec.parse(name)
        resolve(spec.model)
        if spec.adapter and not os.path.isdir(spec.adapter):
            raise ModelStringError(f"LoRA adapter folder {spec.adapter!r} does not exist")
        require_engine(spec.engine)
        return model
    try:
        litellm.get_llm_provider(model)
    except Exception as error:
        why = str(error).splitlines()[0][:120]
        raise ModelStringError(
            f"LiteLLM does not know the provider of {model!r} ({why}); "
            "see https://docs.litellm.ai/docs/providers for model strings"
        ) from None
    return model

"""`GcopLM`: a DSPy LM whose every call goes through gcop's call cache and cost ledger.

It is a `dspy.LM` with a custom engine, DSPy's current LM interface: the engine's
`complete(Request) -> Response` sends the request through `litellm.completion`, so any
LiteLLM model string works (`local/...` included), and puts our cache in between. DSPy's
own response cache and retries are off for these LMs: ours is the single layer, so that
guide, core and teacher calls share one store, one key scheme (with the sample index) and
one ledger, and LiteLLM does the retrying.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import threading
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
from dspy.clients.lm15_boundary import request_kwargs, response_value  # noqa: E402
from dspy.utils.exceptions import LMError  # noqa: E402

from gcop.calls import CallCache, default_cache  # noqa: E402
from gcop.errors import GcopError, ModelStringError  # noqa: E402


class _NoTruncationWarnings(logging.Filter):
    """A reply cut at `max_tokens` is a scored outcome here (a plan over budget, a core that
    ran out of room), not something to log once per call as DSPy does."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "response was truncated" not in record.getMessage()


logging.getLogger("dspy.clients.lm").addFilter(_NoTruncationWarnings())


@functools.cache
def _litellm():
    """LiteLLM with gcop's `local/` provider registered, imported on first use: importing
    LiteLLM (and the provider's torch) takes seconds, which `gcop compile --help` and every
    other import of this module should not pay."""
    import litellm

    import gcop.local.provider  # noqa: F401  (registers `local/...` models with LiteLLM)

    litellm.suppress_debug_info = True
    return litellm


CLIENT_OPTIONS = frozenset(
    {"api_key", "api_base", "base_url", "api_version", "organization", "project", "headers",
     "extra_headers", "extra_query", "timeout", "azure_ad_token_provider", "custom_llm_provider"}
)  # fmt: skip
"""Where and how a request travels: held by the engine (DSPy refuses them on an LM with a
custom engine) and never part of a cache key."""

_sample: contextvars.ContextVar[int | None] = contextvars.ContextVar("gcop_sample", default=None)
"""The sample index (DSPy's `rollout_id`) of the call in flight. DSPy keeps `rollout_id`
from engines, as an execution control; our cache key needs it, so `GcopLM.__call__` sets
it here for the engine, in the same thread and context."""


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


def engine_key_params(model: str) -> dict[str, str]:
    """What a cache key needs beyond the request: for a `local/` model, the engine that
    decodes it (a ct2 int8 reply and a torch one differ, so `local/x` must not answer from a
    cached reply of the other engine). Only the key sees it; remote models add nothing, so
    their cached (paid) calls keep their keys."""
    provider, _, name = model.partition("/")
    if provider != "local":
        return {}
    from gcop.local.engines import choose_engine
    from gcop.local.spec import LocalModelSpec

    return {"local_engine": choose_engine(LocalModelSpec.parse(name))}


class CachedLiteLLMEngine:
    """A DSPy engine: one request -> `litellm.completion`, through gcop's call cache."""

    def __init__(
        self, model: str, client: dict[str, Any], num_retries: int, cache: CallCache | None
    ) -> None:
        self.model, self.client, self.num_retries, self.cache = model, client, num_retries, cache
        _litellm()  # imported here, in the thread that builds the LM, not in 32 calling ones
        self.key_params = engine_key_params(model)

    def complete(self, request):
        params = request_kwargs(request, "chat")
        messages = params.pop("messages")
        if "max_completion_tokens" in params:  # OpenAI's newer name; every provider takes this
            params["max_tokens"] = params.pop("max_completion_tokens")
        cache = self.cache or default_cache()

        def compute() -> tuple[dict[str, Any], float]:
            with _model_slots.get(self.model) or contextlib.nullcontext():
                response = _litellm().completion(
                    model=self.model, messages=messages, num_retries=self.num_retries,
                    **params, **self.client,
                )  # fmt: skip
            return response.model_dump(), _response_cost(response)

        keyed = {**params, **self.key_params}  # the key sees the engine; the call does not
        body, record = cache.call(self.model, messages, keyed, rollout_id=_sample.get(),
                                  compute=compute)  # fmt: skip
        return response_value(body, "chat", request)

    def stream(self, request):
        raise NotImplementedError("GcopLM does not stream: its calls are cached whole")

    def close(self) -> None:
        """Nothing to release: LiteLLM owns its connections."""


class GcopLM(dspy.LM):
    """A `dspy.LM` over LiteLLM with gcop's cache and ledger.

    Args:
        model: any LiteLLM model string (`local/<name-or-path>` for in-process models).
        cache: the call cache to use; default: the process-wide one (`$GCOP_HOME/calls`).
        max_concurrency: requests in flight to this model at once, shared by every GcopLM of
            the same model string in the process (default 16 for remote models).
        temperature, max_tokens, **kwargs: default request parameters; client options
            (`api_base`, `api_key`, ...) go to the engine.
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
        check_model_string(model)
        self.client = {k: kwargs.pop(k) for k in list(kwargs) if k in CLIENT_OPTIONS}
        self.call_cache = cache
        engine = CachedLiteLLMEngine(model, self.client, num_retries, cache)
        super().__init__(
            model, model_type="chat", temperature=temperature, max_tokens=max_tokens,
            cache=False, num_retries=0, engine=engine, **kwargs,
        )  # fmt: skip
        if max_concurrency is not None or model not in _model_slots:
            limit = max_concurrency or (None if model.startswith("local/") else 16)
            _model_slots[model] = threading.BoundedSemaphore(limit) if limit else None

    def __call__(self, prompt=None, *, messages=None, **kwargs):
        token = _sample.set(kwargs.get("rollout_id", self.kwargs.get("rollout_id")))
        try:
            return super().__call__(prompt, messages=messages, **kwargs)
        except LMError as error:  # DSPy wraps what the engine raised: ours stay ours
            if isinstance(error.__cause__, GcopError):
                raise error.__cause__ from None
            raise
        finally:
            _sample.reset(token)

    def settings(self) -> dict[str, Any]:
        """Request defaults and client options, credentials included (callers filter)."""
        return {**self.kwargs, **self.client}

    def dump_state(self) -> dict[str, Any]:
        """The model and its settings, without credentials (see `gcop.persist`)."""
        from gcop.persist import SECRET_PARAMS

        settings = {k: v for k, v in self.settings().items() if k not in SECRET_PARAMS}
        return {"model": self.model, **settings}


def _response_cost(response) -> float:
    """LiteLLM's price for the response; 0.0 for a model LiteLLM has no price for."""
    try:
        return float(_litellm().completion_cost(completion_response=response) or 0.0)
    except Exception:  # litellm raises a bare Exception for unmapped models
        return 0.0


def check_model(model: str) -> str:
    """Fail before any money is spent: a malformed string, an unknown provider, a missing
    local model. Local models are resolved (and registered ones pulled) here."""
    check_model_string(model)
    litellm = _litellm()  # a checked model is one LiteLLM can call (`local/` registered)
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

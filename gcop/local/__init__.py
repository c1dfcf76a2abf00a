"""The `local/` provider: in-process Hugging Face models behind LiteLLM (registered on import)."""

import os

# LiteLLM fetches its cost map from the network at import unless told to use its local copy
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from gcop.local.provider import MODELS, adapter_spec, price_per_token, register
from gcop.local.registry import DEFAULT_MODEL, REGISTRY, list_models, pull, resolve
from gcop.local.spec import LocalModelSpec

register()

__all__ = [
    "DEFAULT_MODEL", "MODELS", "REGISTRY", "LocalModelSpec", "adapter_spec", "list_models",
    "price_per_token", "pull", "resolve",
]  # fmt: skip

"""The `local/` provider: in-process Hugging Face models behind LiteLLM (registered on import)."""

from gcop.local.provider import MODELS, adapter_spec, register
from gcop.local.registry import DEFAULT_MODEL, REGISTRY, list_models, pull, resolve
from gcop.local.spec import LocalModelSpec

register()

__all__ = [
    "DEFAULT_MODEL", "MODELS", "REGISTRY", "LocalModelSpec", "adapter_spec", "list_models",
    "pull", "resolve",
]  # fmt: skip

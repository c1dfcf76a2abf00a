"""The `local/` provider: in-process Hugging Face models behind LiteLLM.

Importing this package is cheap. The provider itself (LiteLLM, torch, CTranslate2: seconds
to import) loads on first use of `MODELS`, `register` or `price_per_token`,
or on `import gcop.local.provider`, and registers itself with LiteLLM then. So the light
submodules (`spec`, `registry`, `precision`) cost nothing to import: `gcop compile --help`
builds its options from config dataclasses that name them.
"""

import os

# LiteLLM fetches its cost map from the network at import unless told to use its local copy
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from gcop.local.registry import DEFAULT_MODEL, REGISTRY, list_models, pull, resolve  # noqa: E402
from gcop.local.spec import LocalModelSpec, adapter_spec  # noqa: E402

_PROVIDER_NAMES = frozenset({"MODELS", "price_per_token", "register"})


def __getattr__(name: str):
    """PEP 562: the provider's names load the provider (which registers it with LiteLLM)."""
    if name in _PROVIDER_NAMES:
        from gcop.local import provider

        return getattr(provider, name)
    raise AttributeError(f"module 'gcop.local' has no attribute {name!r}")


__all__ = [
    "DEFAULT_MODEL", "MODELS", "REGISTRY", "LocalModelSpec", "adapter_spec", "list_models",
    "price_per_token", "pull", "resolve",
]  # fmt: skip

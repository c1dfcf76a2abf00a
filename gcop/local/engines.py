"""Which engine decodes a `local/` model: the transformers loop or CTranslate2.

The automatic choice (no `engine=` in the model string, or `engine=auto`):

- `torch` when the string names a LoRA adapter: adapters change after every training run
  and the torch loop serves them live, while CTranslate2 would need a merge and a
  conversion per adapter (ask for that explicitly with `engine=ct2`);
- `torch` on a CUDA machine (the bf16 loop is fast there; CTranslate2's CUDA build needs
  CUDA libraries that a CPU install does not have);
- `ct2` on a CPU when `ctranslate2` is installed (`pip install 'exectune[ct2]'`): int8
  decoding, 3x (SmolLM2-135M) to 5.7x (Qwen2.5-Coder-0.5B) the torch loop's throughput
  at 32 concurrent requests on a 2-core CPU (docs/benchmarks.md; int8 changes some greedy
  answers, measured there too);
- `torch` otherwise, and for an architecture CTranslate2 cannot convert.
"""

from __future__ import annotations

import functools

from gcop.errors import GcopError
from gcop.local.spec import Engine, LocalModelSpec

CT2_EXTRA = "pip install 'exectune[ct2]'"


class EngineUnavailableError(GcopError, ImportError):
    """The engine named in a model string is not installed."""


@functools.cache
def ct2_installed() -> bool:
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        return False
    return True


def require_engine(engine: str | None) -> None:
    """Fail early, with the install command, when the chosen engine is missing."""
    if engine == "ct2" and not ct2_installed():
        raise EngineUnavailableError(
            "engine=ct2 needs CTranslate2, which is not installed; install it with "
            f"`{CT2_EXTRA}` or drop ?engine=ct2 to use the torch loop"
        )


def choose_engine(spec: LocalModelSpec) -> Engine:
    """The engine that decodes `spec` (its own choice, else the automatic one above)."""
    if spec.engine is not None:
        require_engine(spec.engine)
        return spec.engine
    if spec.adapter is not None or not ct2_installed():
        return "torch"
    import torch

    return "torch" if torch.cuda.is_available() else "ct2"

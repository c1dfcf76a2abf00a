"""gcop: a small trainable guide writes a typed strategy; a black-box core LLM executes it."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from gcop import local  # noqa: E402,F401  (registers the local/ provider with LiteLLM)
from gcop.calls import CallCache, CostLedger, default_cache, set_default_cache, track_calls  # noqa: E402
from gcop.lm import GcopLM  # noqa: E402
from gcop.strategy import Strategy, Validity, Verdict  # noqa: E402

__all__ = [
    "CallCache",
    "CostLedger",
    "GcopLM",
    "Strategy",
    "Validity",
    "Verdict",
    "default_cache",
    "set_default_cache",
    "track_calls",
]

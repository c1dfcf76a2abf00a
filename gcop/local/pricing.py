"""Prices for local models, so their cost flows through LiteLLM like an API model's.

A local model costs compute, not an invoice; to compare a guided small core with a bigger
one on one axis, each local model gets a nominal price proportional to its size:

    input:  $0.10 per million tokens per billion parameters
    output: $0.40 per million tokens per billion parameters

(roughly what hosted open models of that size charge). Override per model with
:func:`set_price` or for every local model with the environment variables
`GCOP_LOCAL_INPUT_PRICE` / `GCOP_LOCAL_OUTPUT_PRICE` (dollars per million tokens per
billion parameters).
"""

from __future__ import annotations

import logging
import os
import threading

import litellm

INPUT_PER_M_PER_B = 0.10
OUTPUT_PER_M_PER_B = 0.40

_overrides: dict[str, tuple[float, float]] = {}
_lock = threading.Lock()


def set_price(model: str, input_per_million: float, output_per_million: float) -> None:
    """Fix the price of one local model (dollars per million tokens), e.g. 'local/my-model'."""
    with _lock:
        _overrides[model] = (input_per_million, output_per_million)
    _register_price(model, input_per_million, output_per_million)


def price_of(model: str, params: int) -> tuple[float, float]:
    """(input, output) dollars per million tokens for a local model of `params` parameters."""
    if model in _overrides:
        return _overrides[model]
    billions = params / 1e9
    rate_in = float(os.environ.get("GCOP_LOCAL_INPUT_PRICE", INPUT_PER_M_PER_B))
    rate_out = float(os.environ.get("GCOP_LOCAL_OUTPUT_PRICE", OUTPUT_PER_M_PER_B))
    return rate_in * billions, rate_out * billions


def register(model: str, params: int) -> None:
    """Tell LiteLLM the price of a freshly loaded local model."""
    _register_price(model, *price_of(model, params))


def _register_price(model: str, input_per_million: float, output_per_million: float) -> None:
    # LiteLLM warns that a custom-priced model has no prompt-cache prices; local models have
    # no prompt cache, so that warning says nothing here.
    litellm_logger = logging.getLogger("LiteLLM")
    level = litellm_logger.level
    litellm_logger.setLevel(logging.ERROR)
    try:
        _register(model, input_per_million, output_per_million)
    finally:
        litellm_logger.setLevel(level)


def _register(model: str, input_per_million: float, output_per_million: float) -> None:
    litellm.register_model(
        {
            model: {
                "input_cost_per_token": input_per_million / 1e6,
                "output_cost_per_token": output_per_million / 1e6,
                "litellm_provider": "local",
                "mode": "chat",
            }
        }
    )

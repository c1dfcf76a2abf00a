"""Which floating-point type training runs in: bf16 wherever the hardware computes it natively.

GPUs since Ampere do; so do x86 CPUs with AMX or AVX512-BF16 (Intel Sapphire Rapids and
later, AMD Zen 4 and later), where oneDNN runs bf16 matmuls several times faster than fp32
(`benchmarks/cpu_bf16_training.py` measures it side by side). Elsewhere bf16 is emulated and
slower, so "auto" keeps fp32 there. The choice is one function so that the SFT and RL stages
(and anything else that trains) agree.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from gcop.errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp32")


def precision_field() -> Any:
    """The `precision` field every training stage's config has (one default, one help)."""
    return field(
        default="auto",
        metadata={"help": "'bf16', 'fp32', or 'auto': bf16 where the hardware computes it "
                  "natively (CUDA; CPUs with AMX or AVX512-BF16), else fp32"},
    )  # fmt: skip


def check_precision(precision: str) -> None:
    """Raise a ConfigError naming the choices when `precision` is not one of them."""
    if precision not in PRECISIONS:
        raise ConfigError(
            f"precision={precision!r} is not a training precision; use one of "
            + ", ".join(repr(p) for p in PRECISIONS)
        )


def native_bf16() -> bool:
    """True on a CUDA GPU with bf16 support, or a CPU that advertises AMX-BF16 or AVX512-BF16."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return bool(capabilities.get("amx_bf16") or capabilities.get("avx512_bf16"))


def trains_in_bf16(precision: str) -> bool:
    """Whether a stage configured with `precision` ("auto", "bf16" or "fp32") trains in bf16."""
    check_precision(precision)
    return precision == "bf16" or (precision == "auto" and native_bf16())

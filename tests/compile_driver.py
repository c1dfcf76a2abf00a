"""Run one small ExecTune compile in its own process (the crash test kills it mid-stage).

Usage: python -m tests.compile_driver API_BASE TINY_MODEL OUTPUT_DIR CACHE_DIR RL_STEPS [STAGES]
(also run under `accelerate launch`, by the multi-process test)
"""

from __future__ import annotations

import sys
from pathlib import Path

from gcop.calls import CallCache, set_default_cache
from gcop.lm import GcopLM
from gcop.optimizers.exectune import ExecTune
from gcop.optimizers.rl import RLStageConfig
from gcop.optimizers.sampling import SamplingConfig
from gcop.optimizers.sft import SFTStageConfig
from gcop.program import Core, GCoP, Guide
from gcop.programs.math import MathPlan, gsm8k_metric
from tests.test_program import examples


def main(api_base: str, tiny_model: str, output_dir: str, cache_dir: str, rl_steps: str,
         stages: str = "sample,sft,rl") -> None:  # fmt: skip
    set_default_cache(CallCache(cache_dir))
    remote = lambda: GcopLM("openai/gpt-4o-mini", api_base=api_base, api_key="sk-test")  # noqa: E731
    program = GCoP(Guide(MathPlan, f"local/{tiny_model}", max_tokens=16), Core(remote()))
    tuner = ExecTune(
        remote(), gsm8k_metric,
        sampling=SamplingConfig(candidates=2, num_threads=4),
        sft=SFTStageConfig(epochs=1, per_device_batch_size=4, logging_steps=1, save_steps=1),
        rl=RLStageConfig(max_steps=int(rl_steps), num_generations=2, per_device_batch_size=4,
                         max_completion_length=16, logging_steps=1, save_steps=1),
        output_dir=Path(output_dir), stages=tuple(stages.split(",")),
    )  # fmt: skip
    tuner.compile(program, examples(4, trick=True))
    print("compiled", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])

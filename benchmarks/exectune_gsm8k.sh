#!/usr/bin/env bash
# ExecTune on GSM8K with real local models: guide SmolLM2-135M, core Qwen2.5-Coder-0.5B,
# teacher Qwen2.5-Coder-1.5B (benchmark stand-ins: python ../shared/models/fetch_models.py).
# Train on a seeded sample of the train split, score the dev sample after every stage;
# report.json / report.png land in runs/exectune-gsm8k. Sizes: override with env vars.
set -euo pipefail
TRAIN=${TRAIN:-32} DEV=${DEV:-50} K=${K:-4} RL_STEPS=${RL_STEPS:-30}
gcop compile gsm8k \
  --guide local/smollm2-135m-instruct \
  --core local/qwen2.5-coder-0.5b-instruct \
  --teacher local/qwen2.5-coder-1.5b-instruct \
  --limit "$TRAIN" --dev-limit "$DEV" --candidates "$K" --show-reference \
  --rl-steps "$RL_STEPS" --seed 0 --output-dir runs/exectune-gsm8k

#!/usr/bin/env bash
# ExecTune on GSM8K with real local models: guide SmolLM2-135M, core Qwen2.5-Coder-0.5B,
# teacher Qwen2.5-Coder-1.5B (benchmark stand-ins: python ../shared/models/fetch_models.py).
# Train on a seeded sample of the train split, score the dev sample after every stage;
# report.json / report.png land in runs/exectune-gsm8k. Sizes: override with env vars.
set -euo pipefail
TRAIN=${TRAIN:-24} DEV=${DEV:-40} K=${K:-2} SFT_EPOCHS=${SFT_EPOCHS:-10} RL_STEPS=${RL_STEPS:-8}
CORE=${CORE:-local/qwen2.5-coder-0.5b-instruct} OUT=${OUT:-runs/exectune-gsm8k}
STAGES=${STAGES:-sample,sft,rl}
gcop compile gsm8k \
  --guide local/smollm2-135m-instruct \
  --core "$CORE" \
  --teacher local/qwen2.5-coder-1.5b-instruct \
  --limit "$TRAIN" --dev-limit "$DEV" --candidates "$K" --show-reference \
  --sft-epochs "$SFT_EPOCHS" --rl-steps "$RL_STEPS" --stages "$STAGES" \
  --seed 0 --output-dir "$OUT"

#!/usr/bin/env bash
# ExecTune on GSM8K with real local models: guide SmolLM2-135M, core Qwen2.5-Coder-0.5B
# (or CORE=local/smollm2-135m-instruct), teacher Qwen2.5-Coder-1.5B (benchmark stand-ins:
# python ../shared/models/fetch_models.py). Trains on a seeded sample of the train split and
# scores a seeded dev sample after every stage; report.json / report.png land in $OUT.
# Sizes and parallelism: override with env vars (on a GPU raise THREADS, RL_BATCH and
# GCOP_LOCAL_MAX_BATCH); GUIDE, CORE and TEACHER take any model string, e.g. `?engine=torch`
# to rerun on the torch loop. docs/benchmarks.md has the sizes used and the results.
set -euo pipefail
TRAIN=${TRAIN:-12} DEV=${DEV:-30} K=${K:-2} SFT_EPOCHS=${SFT_EPOCHS:-20} RL_STEPS=${RL_STEPS:-6}
RL_BATCH=${RL_BATCH:-8} THREADS=${THREADS:-16} STAGES=${STAGES:-sample,sft,rl}
CORE=${CORE:-local/qwen2.5-coder-0.5b-instruct} OUT=${OUT:-runs/exectune-gsm8k}
GUIDE=${GUIDE:-local/smollm2-135m-instruct} TEACHER=${TEACHER:-local/qwen2.5-coder-1.5b-instruct}
gcop compile gsm8k \
  --guide "$GUIDE" \
  --core "$CORE" \
  --teacher "$TEACHER" \
  --limit "$TRAIN" --dev-limit "$DEV" --candidates "$K" --show-reference \
  --sft-epochs "$SFT_EPOCHS" --rl-steps "$RL_STEPS" --rl-batch-size "$RL_BATCH" \
  --threads "$THREADS" --stages "$STAGES" --seed 0 --output-dir "$OUT"

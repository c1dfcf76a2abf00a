#!/usr/bin/env bash
# The headline experiment (issue "ExecTune must work"): GSM8K test partition, core alone vs
# the ExecTune-compiled GCoP, the ceiling (reference plans), the untrained guide, and the
# stage ablation AS / AS+SFT / AS+SFT+RL over 3 training seeds. Resumable and cached: a
# killed run continues where it stopped, a finished one reruns in seconds.
# Sizes: override with env vars (TEST=300 is the whole test partition). On a GPU raise
# THREADS and GCOP_LOCAL_MAX_BATCH; docs/benchmarks.md has the sizes used and the results.
set -euo pipefail
CORE=${CORE:-local/qwen2.5-coder-1.5b-instruct} GUIDE=${GUIDE:-local/smollm2-135m-instruct}
TEACHER=${TEACHER:-reference} TRAIN=${TRAIN:-400} DEV=${DEV:-50} TEST=${TEST:-300}
SEEDS=${SEEDS:-0,1,2} SFT_EPOCHS=${SFT_EPOCHS:-3} RL_STEPS=${RL_STEPS:-50}
THREADS=${THREADS:-32} OUT=${OUT:-runs/headline} RESULTS=${RESULTS:-docs/results/headline.json}
python benchmarks/headline.py --task gsm8k --core "$CORE" --guide "$GUIDE" \
  --teacher "$TEACHER" --train "$TRAIN" --dev "$DEV" --test "$TEST" --seeds "$SEEDS" \
  --sft-epochs "$SFT_EPOCHS" --rl-steps "$RL_STEPS" --threads "$THREADS" \
  --out "$OUT" --results "$RESULTS" ${LARGER_CORE:+--larger-core "$LARGER_CORE"}

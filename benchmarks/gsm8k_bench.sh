#!/usr/bin/env bash
# GSM8K dev, 100 problems (seed 0): core alone vs untrained SmolLM2 guide + core, for two
# local cores. Results land in runs/bench/<core>/; docs/benchmarks.md quotes them.
set -euo pipefail
guide=local/smollm2-135m-instruct
for core in local/smollm2-135m-instruct local/qwen2.5-coder-0.5b-instruct; do
  gcop bench gsm8k --core "$core" --guide "$guide" --limit 100 --seed 0 --split dev \
    --threads 32 --out "runs/bench/${core#local/}"
done

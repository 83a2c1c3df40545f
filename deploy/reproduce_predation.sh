#!/usr/bin/env bash
# The paper's headline claim on 2-agent Cooperative Predation (and its ablations), with the defaults:
# SS reaches cc_rate >= 0.9 while rho = 0 and IPPO stay far below. 9 runs of 48,000 episodes,
# PARALLEL at a time (default 2: one per core). Writes runs/predation2/<algo>-s<seed>/ and a summary.
# Usage: bash deploy/reproduce_predation.sh [OUT_DIR] [PARALLEL]
set -euo pipefail
out=${1:-runs/predation2}
parallel=${2:-2}
bin=$(dirname "$(command -v ss-sim || echo .venv/bin/ss-sim)")
mkdir -p "$out"
for seed in 0 1 2; do
  echo "ss-s$seed --seed $seed"
  echo "rho0-s$seed --seed $seed --rho 0"
  echo "ippo-s$seed --seed $seed --algo ippo"
done | xargs -P "$parallel" -L 1 sh -c \
  "\"$bin/ss-sim\" --env predation --agents 2 --episodes 48000 --batch 16 --no-progress --out \"$out/\$0\" \"\$@\" > \"$out/\$0.log\" 2>&1"
"$bin/python" -m coordinator.summary "$out"/*/

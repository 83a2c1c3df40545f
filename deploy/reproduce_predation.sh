#!/usr/bin/env bash
# The paper's headline claim on Cooperative Predation, with the shipped defaults: SS reaches a high
# cc_rate while its ablation (rho = 0) and IPPO stay far below. Runs ss / rho0 / ippo x SEEDS with
# PARALLEL runs at a time (default 2: one per core), then prints the final metrics (mean of the
# last 10% of metrics.csv rows) of every run.
# Usage: bash deploy/reproduce_predation.sh [OUT_DIR] [PARALLEL]
#   AGENTS=2 EPISODES=48000 SEEDS="0 1 2" VARIANTS="ss rho0 ippo" (environment overrides)
set -euo pipefail
out=${1:-runs/predation${AGENTS:-2}}
parallel=${2:-2}
agents=${AGENTS:-2}
episodes=${EPISODES:-48000}
bin=$(dirname "$(command -v ss-sim || echo .venv/bin/ss-sim)")
declare -A flags=([ss]="" [rho0]="--rho 0" [ippo]="--algo ippo")
mkdir -p "$out"
for seed in ${SEEDS:-0 1 2}; do
  for variant in ${VARIANTS:-ss rho0 ippo}; do
    echo "$variant-s$seed --seed $seed${flags[$variant]:+ ${flags[$variant]}}"  # no trailing blank: xargs -L joins lines on it
  done
done | xargs -P "$parallel" -L 1 sh -c \
  "\"$bin/ss-sim\" --env predation --agents $agents --episodes $episodes --batch 16 --no-progress --out \"$out/\$0\" \"\$@\" > \"$out/\$0.log\" 2>&1"
"$bin/python" -m coordinator.research.summary "$out"/*/

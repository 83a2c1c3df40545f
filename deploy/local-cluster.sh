#!/usr/bin/env bash
# Start a cluster by hand, the way separate machines would: coordinator, env server and N agents as
# background processes with logs in OUT/logs/. Every process is stopped on exit, Ctrl-C or failure.
# Usage: bash deploy/local-cluster.sh OUT [ss-coordinator run options...]
#   e.g. bash deploy/local-cluster.sh runs/nav --env navigation --episodes 320
# Environment: SS_COORDINATOR_PORT (default 5550); SS_KEYS=DIR runs every process with CurveZMQ keys
# from DIR (made with `ss-keys DIR --agents N`, plus `--cl` for --algo cl).
# (ss-cluster does the same with a progress bar; this script shows the individual commands.)
set -euo pipefail
out=${1:?usage: local-cluster.sh OUT [run options]}; shift
bin=$(dirname "$(command -v ss-agent || echo .venv/bin/ss-agent)")
port=${SS_COORDINATOR_PORT:-5550}
coordinator="tcp://127.0.0.1:$port"
run_id="local-$$"
keys=()
if [ -n "${SS_KEYS:-}" ]; then keys=(--keys "$SS_KEYS"); fi
mkdir -p "$out/logs"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$bin/ss-coordinator" "$@" --out "$out" --bind "$coordinator" --run-id "$run_id" "${keys[@]}" > "$out/logs/coordinator.log" 2>&1 &
coordinator_pid=$!; pids+=("$coordinator_pid")
# the coordinator resolves the run config (agents from --agents or the env default) into config.toml
for _ in $(seq 100); do [ -s "$out/config.toml" ] && break; sleep 0.1; done
read -r agents algo < <("$bin/python" -c "import tomllib,sys; c = tomllib.load(open(sys.argv[1],'rb')); print(c['agents'], c['algo'])" "$out/config.toml")
common=(--coordinator "$coordinator" --out "$out" --run-id "$run_id" "${keys[@]}")
"$bin/ss-envserver" "${common[@]}" > "$out/logs/envserver.log" 2>&1 &
pids+=("$!")
if [ "$algo" = cl ]; then  # CL's central learner: the process every agent sends its rewards to
  "$bin/ss-critic" "${common[@]}" > "$out/logs/learner.log" 2>&1 &
  pids+=("$!")
fi
for ((i = 0; i < agents; i++)); do
  "$bin/ss-agent" --id "$i" "${common[@]}" > "$out/logs/agent-$i.log" 2>&1 &
  pids+=("$!")
done
echo "cluster of $agents agents running (coordinator pid $coordinator_pid); logs in $out/logs" >&2
wait "$coordinator_pid"   # the coordinator exits when every process has finished (non-zero on failure)
status=$?
for pid in "${pids[@]:1}"; do wait "$pid" || status=1; done
exit $status

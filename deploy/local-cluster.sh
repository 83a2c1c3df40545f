#!/usr/bin/env bash
# Start a cluster by hand, the way separate machines would: coordinator, env server and N agents as
# background processes with logs in OUT/logs/. Every process is stopped on exit, Ctrl-C or failure.
# Usage: bash deploy/local-cluster.sh OUT [ss-coordinator run options...]
#   e.g. bash deploy/local-cluster.sh runs/nav --env navigation --episodes 320
# Environment: SS_COORDINATOR_PORT (default 5550); SS_KEYS=DIR runs every process with CurveZMQ keys
# from DIR (made with `ss-keys DIR --agents N`, plus `--cl` for --algo cl); SS_MAX_RESTARTS (default 3):
# a process killed by a signal (kill -9, a crash) is restarted that often, after 1, 2, 4 ... s, at the port
# it had (each is pinned at start); its pid is in OUT/logs/<name>.pid.
# (ss-cluster does the same with a progress bar; this script shows the individual commands.)
set -euo pipefail
out=${1:?usage: local-cluster.sh OUT [run options]}; shift
bin=$(dirname "$(command -v ss-agent || echo .venv/bin/ss-agent)")
port=${SS_COORDINATOR_PORT:-5550}
coordinator="tcp://127.0.0.1:$port"
run_id="local-$$"
keys=()
if [ -n "${SS_KEYS:-}" ]; then keys=(--keys "$SS_KEYS"); fi
max_restarts=${SS_MAX_RESTARTS:-3}
mkdir -p "$out/logs"
rm -f "$out/logs/.stopping"
pids=()
cleanup() {
  touch "$out/logs/.stopping"  # no restarts from here on
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for file in "$out"/logs/*.pid; do [ -e "$file" ] && { kill "$(cat "$file")" 2>/dev/null || true; }; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

supervise() {  # NAME CMD...: run CMD; restart it when a signal killed it, up to max_restarts times
  local name=$1 restarts=0 code
  shift
  while true; do
    "$@" >> "$out/logs/$name.log" 2>&1 &
    echo "$!" > "$out/logs/$name.pid"
    code=0; wait "$!" || code=$?
    if [ "$code" -le 128 ] || [ "$restarts" -ge "$max_restarts" ] || [ -e "$out/logs/.stopping" ]; then
      return "$code"
    fi
    restarts=$((restarts + 1))
    echo "$name died (signal $((code - 128))); restarting it ($restarts of $max_restarts) in $((1 << (restarts - 1))) s" >&2
    sleep $((1 << (restarts - 1)))
  done
}
free_port() { "$bin/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
pinned() { echo "tcp://127.0.0.1:$(free_port)"; }

supervise coordinator "$bin/ss-coordinator" "$@" --out "$out" --bind "$coordinator" --run-id "$run_id" "${keys[@]}" &
coordinator_pid=$!; pids+=("$coordinator_pid")
# the coordinator resolves the run config (agents from --agents or the env default) into config.toml
for _ in $(seq 100); do [ -s "$out/config.toml" ] && break; sleep 0.1; done
read -r agents algo < <("$bin/python" -c "import tomllib,sys; c = tomllib.load(open(sys.argv[1],'rb')); print(c['agents'], c['algo'])" "$out/config.toml")
common=(--coordinator "$coordinator" --out "$out" --run-id "$run_id" "${keys[@]}")
supervise envserver "$bin/ss-envserver" "${common[@]}" --bind "$(pinned)" &
pids+=("$!")
if [ "$algo" = cl ]; then  # CL's central learner: the process every agent sends its rewards to
  supervise learner "$bin/ss-critic" "${common[@]}" --bind "$(pinned)" &
  pids+=("$!")
fi
for ((i = 0; i < agents; i++)); do
  supervise "agent-$i" "$bin/ss-agent" --id "$i" "${common[@]}" --bind "$(pinned)" &
  pids+=("$!")
done
echo "cluster of $agents agents running (coordinator pid $coordinator_pid); logs in $out/logs" >&2
status=0
wait "$coordinator_pid" || status=$?  # the coordinator exits when every process has finished (non-zero on failure)
for pid in "${pids[@]:1}"; do wait "$pid" || status=1; done
exit $status

"""Scale: for each N, predation with N agents (batch 16, shipped defaults) under `ss-cluster` and `ss-sim`:
seconds per update and their ratio, the cluster's start-up and stop times, and the proportional set size (PSS, from
/proc/PID/smaps_rollup) of each agent process and of the whole cluster, measured in one run per N.

    python bench/scale_bench.py [--agents 8,16,32,64,128] [--updates 6] [--suggester dense|sparse|shared] [--quick]

Seconds per update: the cluster's from its env server's audit log (as runtime_bench.py), the simulation's
timed in-process; the first update of each is a warm-up. Start-up: from launch to the env server's first
OBS; stop: from the first agent that reports it finished to ss-cluster's exit. PSS is
read once every process has run an update (the agents' nets, optimisers and buffers exist).
Audit: the bytes of every audit log the cluster wrote, per million env steps (one step of one world copy).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import torch

from _timing import explain, median, predation, result, time_update
from coordinator.sim import Simulation
from protocol.audit.log import iter_records
from protocol.run.config import SUGGESTERS, RunConfig
from envserver.worlds.predation import HORIZON
from protocol.run.rundir import RunDir
from runtime_bench import obs_batches, update_intervals


def pss_kib(pid: int) -> int:
    """Proportional set size of a process, KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def sim_update_s(config: RunConfig, out: Path, updates: int) -> float:
    sim = Simulation(config, out)
    sim.open(progress=False)
    try:
        time_update(sim)  # warm-up
        return median(total for total, _ in (time_update(sim) for _ in range(updates - 1)))
    finally:
        sim.close()


def first_obs_time(audit: Path) -> float | None:
    for record in iter_records(audit):
        if getattr(record, "kind", None) == "OBS":
            return record.time
    return None


def parent(pid: int) -> int:
    """The parent pid of a process (0 if it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def audit_bytes(out: Path) -> int:
    """Bytes of every audit log a run wrote (the agents', and the other processes' in logs/)."""
    return sum(p.stat().st_size for p in (*out.glob("agents/*/audit.log"), *out.glob("logs/*.audit.log")))


def first_finished(coordinator_log: Path) -> float | None:
    """time.time() of the coordinator's first "agent <id> stopped: finished" line (its log's local time): the
    first agent done with its last update (the env server finishes earlier, before that update's training)."""
    for line in coordinator_log.read_text().splitlines():
        if " INFO agent " in line and line.endswith(" stopped: finished"):
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def cluster_run(config: RunConfig, out: Path) -> tuple[float, float, list[int], list[int], float]:
    """(seconds per update, start-up seconds, PSS KiB of each agent process, PSS KiB of the others, stop
    seconds: from the first agent reporting it finished to ss-cluster's exit, every process reaped)."""
    cmd = [str(Path(sys.executable).parent / "ss-cluster"), "--env", config.env, "--agents", str(config.agents),
           "--batch", str(config.batch), "--episodes", str(config.episodes), "--suggester", config.suggester,
           "--no-progress", "--out", str(out)]
    launched = time.time()
    errors = out.parent / "ss-cluster.stderr"  # a file, not a pipe nobody drains while it runs
    with open(errors, "w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
    rd = RunDir(out)
    agents: list[int] = []
    others: list[int] = []
    while proc.poll() is None:  # polling the run's own files for its progress
        rows = len(rd.metrics.read_text().splitlines()) if rd.metrics.exists() else 0
        if rows >= 2 and not agents and rd.processes.exists():  # every process has run an update
            listed = json.loads(rd.processes.read_text())
            read = {p["pid"]: pss_kib(p["pid"]) for p in listed}
            zygote = parent(next(p["pid"] for p in listed if p["role"] == "agent"))
            if zygote != proc.pid:  # the fork server the children came from shares their pages: count it
                read[zygote] = pss_kib(zygote)
            if all(read.values()):  # every one still alive when read (else: read again)
                agents = [read[p["pid"]] for p in listed if p["role"] == "agent"]
                others = [kib for pid, kib in read.items() if pid not in {p["pid"] for p in listed
                                                                          if p["role"] == "agent"}]
        time.sleep(0.05)
    ended = time.time()
    if proc.returncode != 0:
        raise SystemExit(f"ss-cluster failed: {errors.read_text()[-2000:]}")
    started = first_obs_time(rd.process_audit("envserver"))
    per_update = median(update_intervals(obs_batches(rd.process_audit("envserver")))[1:])
    finished = first_finished(rd.logs / "coordinator.log")
    return (per_update, (started - launched) if started else float("nan"), agents, others,
            (ended - finished) if finished else float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="8,16,32,64,128", help="comma-separated N to measure")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--updates", type=int, default=6, help="updates per run (the first is a warm-up)")
    parser.add_argument("--suggester", default="dense", choices=SUGGESTERS, help="SS's suggestion nets")
    parser.add_argument("--quick", action="store_true", help="tiny settings for the smoke test")
    args = parser.parse_args()
    if args.quick:
        args.agents, args.batch, args.updates = "2,3", 2, 30  # long enough to read PSS while it runs
    torch.set_num_threads(1)
    explain(f"predation, batch {args.batch}, --suggester {args.suggester}, {args.updates} updates per run (first a "
            "warm-up); PSS read after the first update")
    for n in (int(x) for x in args.agents.split(",")):
        config = predation(n, args.batch, args.updates, suggester=args.suggester)
        with tempfile.TemporaryDirectory() as tmp:
            cluster_s, startup_s, agents, others, stop_s = cluster_run(config, Path(tmp) / "cluster")
            audit = audit_bytes(Path(tmp) / "cluster")
            sim_s = sim_update_s(config, Path(tmp) / "sim", args.updates)
        result(f"n{n}_cluster_update_s", cluster_s, "s")
        result(f"n{n}_sim_update_s", sim_s, "s")
        result(f"n{n}_cluster_over_sim", cluster_s / sim_s, "x")
        result(f"n{n}_startup_s", startup_s, "s", f"{startup_s / n:.3f} s per agent")
        result(f"n{n}_stop_s", stop_s, "s", "first agent finished -> every process reaped")
        result(f"n{n}_pss_per_agent_mib", median(agents) / 1024, "MiB", "median over the agent processes")
        result(f"n{n}_pss_total_gib", (sum(agents) + sum(others)) / 2**20, "GiB", "every process of the cluster")
        env_steps = config.episodes * HORIZON
        result(f"n{n}_audit_gib_per_m_steps", audit / env_steps * 1e6 / 2**30, "GiB",
               f"audit logs ({config.audit}) per million env steps (one step of one parallel world)")


if __name__ == "__main__":
    main()

"""Learner cost of SS against IPPO: seconds per training update on predation (8 agents, batch 16) and,
at the paper's net sizes ((1024, 256), 4 agents), on Cleanup and Harvest.

    python bench/learner_bench.py [--updates 20] [--grid-updates 3] [--quick]

Per world, both runs are `ss-sim` Simulations built from the same resolved config except `algo`,
measured in one process and interleaved update by update (the order alternates) so machine drift hits
both alike. An update = rollout of one episode batch (all agents act for T steps) + training (K
exchange rounds, each followed by one Adam pass of every learner); "train" is the training part alone.
Predation's lines are unprefixed; the gridworlds' are prefixed with their name. SS is then also run as a
cluster (one process per agent, timed as scale_bench.py does), and both runtimes' seconds per update are
turned into hours per million env steps.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from _timing import explain, median, result, time_update
from scale_bench import cluster_run
from coordinator.sim import Simulation
from protocol.run.config import resolve


def measure(sims: dict[str, Simulation], updates: int) -> dict[str, tuple[list[float], list[float]]]:
    """One warm-up update each, then `updates` timed ones, alternating which algorithm goes first."""
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in sims}
    order = list(sims)
    for update in range(updates + 1):
        for name in order if update % 2 else reversed(order):
            total, train = time_update(sims[name])
            if update:  # update 0 warms caches and allocators
                times[name][0].append(total)
                times[name][1].append(train)
    return times


def bench_world(env: str, agents: int, batch: int, updates: int, prefix: str) -> None:
    """Median seconds per update of ss and ippo on `env` (its shipped defaults), and their ratios."""
    with tempfile.TemporaryDirectory() as tmp:
        sims = {algo: Simulation(resolve(None, {"env": env, "agents": agents, "batch": batch,
                                                "episodes": (updates + 1) * batch, "algo": algo}), Path(tmp) / algo)
                for algo in ("ss", "ippo")}
        for sim in sims.values():
            sim.open(progress=False)
        try:
            times = measure(sims, updates)
        finally:
            for sim in sims.values():
                sim.close()
    config = sims["ss"].config
    explain(f"{env}, {agents} agents, batch {batch}, K={config.iterations}, hidden {config.hidden}; "
            f"median of {updates} updates after 1 warm-up, ss and ippo interleaved")
    for algo in sims:
        result(f"{prefix}{algo}_update_s", median(times[algo][0]), "s", f"{algo}: seconds per update (rollout + train)")
        result(f"{prefix}{algo}_train_s", median(times[algo][1]), "s", f"{algo}: seconds of training per update")
    result(f"{prefix}update_ratio_ss_over_ippo", median(times["ss"][0]) / median(times["ippo"][0]), "x",
           "ss / ippo, rollout + train")
    result(f"{prefix}train_ratio_ss_over_ippo", median(times["ss"][1]) / median(times["ippo"][1]), "x",
           "ss / ippo, training only")
    with tempfile.TemporaryDirectory() as tmp:  # at least two timed updates after the warm-up
        cluster_s = cluster_run(replace(config, episodes=(max(updates, 2) + 1) * batch), Path(tmp) / "cluster")[0]
    updates_per_m_steps = 1e6 / (batch * sims["ss"].spec.horizon)
    result(f"{prefix}ss_cluster_update_s", cluster_s, "s", "ss under ss-cluster (one process per agent), "
           "from the env server's audit log")
    result(f"{prefix}ss_sim_hours_per_m_steps", median(times["ss"][0]) * updates_per_m_steps / 3600, "h",
           "ss-sim: hours per million env steps (one step of one parallel world)")
    result(f"{prefix}ss_cluster_hours_per_m_steps", cluster_s * updates_per_m_steps / 3600, "h", "ss-cluster: the same")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=8, help="predation's agents")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--updates", type=int, default=20, help="timed predation updates per algorithm")
    parser.add_argument("--grid-updates", type=int, default=3, help="timed cleanup/harvest updates per algorithm")
    parser.add_argument("--quick", action="store_true", help="tiny settings for the smoke test")
    args = parser.parse_args()
    grid_agents = 4
    if args.quick:
        args.agents, args.batch, args.updates, args.grid_updates, grid_agents = 2, 2, 2, 1, 2
    torch.set_num_threads(1)
    explain("update = rollout (T steps, every agent acts) + train (K rounds x one Adam pass per agent)")
    bench_world("predation", args.agents, args.batch, args.updates, "")
    for env in ("cleanup", "harvest"):
        bench_world(env, grid_agents, args.batch, args.grid_updates, f"{env}_")


if __name__ == "__main__":
    main()

"""Seconds per update of one 8-agent predation config under three ways of running a cluster, as ratios to
the local backend, measured in one run:

- local: `ss-cluster` (every process a child of the launcher, on loopback);
- ray: `ss-cluster --backend ray` on a 3-node Ray cluster (`ray.cluster_utils`) inside a loopback-only
  network namespace;
- namespaces: coordinator and env server on one host, the agents split over two more, each host a network
  namespace on a bridge (tests/netns.py), dialling by address with --bind/--advertise (plaintext).

    sudo python bench/backend_bench.py [--updates 20] [--quick]

All three run on this machine's cores, so the ratios show what each path costs on top of the learning
(Ray's actors, the veth/bridge hops), not what more machines would buy. Updates are timed from the env
server's audit log as in runtime_bench.py; the first is a warm-up. Needs root (namespaces) and ssmarl[ray].
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test helpers that build namespaces and Ray nodes

from _timing import explain, median, predation, result  # noqa: E402
from coordinator.launcher import run_cluster  # noqa: E402
from protocol.run.config import RunConfig  # noqa: E402
from protocol.run.rundir import RunDir  # noqa: E402
from runtime_bench import obs_batches, update_intervals  # noqa: E402
from tests.netns import Network, unavailable  # noqa: E402
from tests.procs import Processes, script  # noqa: E402
from tests.raynodes import RayNodes  # noqa: E402


def seconds_per_update(out: Path) -> float:
    """Median update time of a finished run, from its env server's audit log (warm-up dropped)."""
    return median(update_intervals(obs_batches(RunDir(out).process_audit("envserver")))[1:])


def options(config: RunConfig) -> list[str]:
    """The run options of `config` (the shipped defaults for the rest) as a command line."""
    return ["--env", config.env, "--agents", str(config.agents), "--batch", str(config.batch),
            "--episodes", str(config.episodes), "--seed", str(config.seed)]


def local(config: RunConfig, out: Path) -> float:
    if run_cluster(config, out, progress=False) != 0:
        raise SystemExit(f"the local cluster failed; see {out / 'logs'}")
    return seconds_per_update(out)


def on_ray(config: RunConfig, out: Path, tmp: Path) -> float:
    tmp.mkdir(parents=True, exist_ok=True)
    with RayNodes(tmp) as nodes:
        done = subprocess.run(nodes.cmd(script("ss-cluster"), "--backend", "ray", "--ray-address", nodes.address,
                                        "--ray-cpus", "0.5", *options(config), "--no-progress", "--out", str(out)),
                              capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise SystemExit(f"the Ray cluster failed: {done.stderr[-2000:]}")
        placed = {p["node"] for p in json.loads((out / "processes.json").read_text())}
        explain(f"ray: {len(placed)} nodes used")
    return seconds_per_update(out)


def across_namespaces(config: RunConfig, out: Path, tmp: Path) -> float:
    """Coordinator and env server on host 0; agents alternate between hosts 1 and 2."""
    run = options(config)
    with Network(3) as net, Processes(tmp / "logs") as procs:
        coordinator = f"tcp://{net.address(0)}:5550"
        common = ["--coordinator", coordinator, "--out", str(out), "--insecure"]
        started = [procs.start("coordinator", *net.cmd(0, script("ss-coordinator"), *run, "--bind", coordinator,
                                                       "--out", str(out), "--insecure")),
                   procs.start("envserver", *net.cmd(0, script("ss-envserver"), *common, "--bind",
                                                     f"tcp://{net.address(0)}:0"))]
        for i in range(config.agents):
            host = 1 + i % 2
            started.append(procs.start(f"agent-{i}", *net.cmd(host, script("ss-agent"), "--id", str(i), *common,
                                                              "--bind", f"tcp://{net.address(host)}:0")))
        for proc in started:
            if proc.wait(timeout=3600) != 0:
                raise SystemExit(f"a process across namespaces failed; see {tmp / 'logs'}")
    return seconds_per_update(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--updates", type=int, default=20, help="updates per run (the first is a warm-up)")
    parser.add_argument("--quick", action="store_true", help="tiny settings for the smoke test")
    args = parser.parse_args()
    if args.quick:
        args.agents, args.batch, args.updates = 2, 2, 4
    if unavailable() is not None:
        raise SystemExit(f"backend_bench: {unavailable()}")
    config = predation(args.agents, args.batch, args.updates)
    explain(f"predation, {args.agents} agents, batch {args.batch}, {args.updates} updates per run")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        first = local(config, root / "local-first")
        ray = on_ray(config, root / "ray", root / "ray-tmp")
        netns = across_namespaces(config, root / "netns", root / "netns-tmp")
        base = (first + local(config, root / "local-last")) / 2  # before and after: drift hits all alike
        result("local_update_s", base, "s", "mean of a run before and one after the others")
        result("ray_update_s", ray, "s", "3 Ray nodes in a loopback-only namespace")
        result("ray_over_local", ray / base, "x")
        result("namespaces_update_s", netns, "s", "3 hosts (network namespaces) on a bridge")
        result("namespaces_over_local", netns / base, "x")


if __name__ == "__main__":
    main()

"""Integration: the multi-process runtime on loopback, against the in-process reference."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from coordinator.launcher import free_port
from tests.procs import Processes, alive, run_sim_and_cluster, script, wait_for_updates, wait_until

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]  # real multi-process clusters


def flat_params(run: Path, agent: int) -> np.ndarray:
    state = torch.load(run / "agents" / str(agent) / "checkpoint.pt", weights_only=False)["learner"]
    tensors = [v for v in _tensors(state)]
    return np.concatenate([t.detach().numpy().ravel() for t in tensors])


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, dict):
        for key in sorted(tree, key=str):
            yield from _tensors(tree[key])
    elif isinstance(tree, (list, tuple)):
        for item in tree:
            yield from _tensors(item)


def test_cluster_matches_sim_bit_for_bit(tmp_path: Path) -> None:
    """Same options and seed: identical metrics.csv, train.csv and final parameters, 8 distinct agent pids."""
    opts = ["--env", "predation", "--agents", "8", "--episodes", "32", "--batch", "16", "--seed", "1"]
    _, _, listed = run_sim_and_cluster(tmp_path, opts)
    assert (tmp_path / "cl" / "metrics.csv").read_bytes() == (tmp_path / "sim" / "metrics.csv").read_bytes()
    agents = [p for p in listed if p["role"] == "agent"]
    assert sorted(p["id"] for p in agents) == list(range(8))
    assert len({p["pid"] for p in listed}) == 10
    assert {p["role"] for p in listed} == {"agent", "envserver", "coordinator"}
    for i in range(8):
        assert (tmp_path / "cl" / f"agents/{i}/train.csv").read_bytes() == \
            (tmp_path / "sim" / f"agents/{i}/train.csv").read_bytes()
        np.testing.assert_array_equal(flat_params(tmp_path / "cl", i), flat_params(tmp_path / "sim", i))
    assert not any(alive(p["pid"]) for p in listed)
    received = json.loads((tmp_path / "cl" / "agents/0/received.json").read_text())
    assert received["dropped"] == {}
    assert set(received["received"]) >= {"DIST", "SUGG", "OBS", "DIRECTORY", "START"}


def test_pieces_started_by_hand_train_navigation(tmp_path: Path) -> None:
    """README's manual start: coordinator, env server, and agents with --neighbors on the 0-1-2 line."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    out = str(tmp_path / "nav")
    common = ["--coordinator", endpoint, "--out", out]
    with Processes(tmp_path / "logs") as procs:
        coord = procs.start("coordinator", script("ss-coordinator"), "--env", "navigation", "--episodes", "4",
                            "--batch", "2", "--bind", endpoint, "--out", out)
        env = procs.start("envserver", script("ss-envserver"), *common)
        agents = [procs.start(f"agent-{i}", script("ss-agent"), "--id", str(i), "--neighbors", nbrs, *common)
                  for i, nbrs in enumerate(["1", "0,2", "1"])]
        for name, proc in [("coordinator", coord), ("envserver", env)] + \
                [(f"agent-{i}", a) for i, a in enumerate(agents)]:
            assert proc.wait(timeout=300) == 0, procs.log(name)
    rows = (tmp_path / "nav" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 2  # header + 2 updates of 2 episodes
    assert "neighbors" in (tmp_path / "nav" / "config.toml").read_text()
    train = (tmp_path / "nav" / "agents/1/train.csv").read_text().splitlines()
    assert len(train) == 3 and train[-1].split(",")[-2] == "0.0"  # no communication gaps


def endless_cluster(procs: Processes, out: Path, updates: int, *extra: str) -> tuple[subprocess.Popen, list[dict]]:
    """A 3-agent ss-cluster that would run for hours, once it has done `updates` updates."""
    cluster = procs.start("cluster", script("ss-cluster"), "--env", "predation", "--agents", "3",
                          "--episodes", "100000", "--batch", "4", "--out", str(out), "--no-progress", *extra)
    wait_for_updates(out, updates)
    return cluster, procs.adopt(out / "processes.json")


def wait_all_ended(listed: list[dict]) -> None:
    wait_until(lambda: not any(alive(p["pid"]) for p in listed), 30, "every cluster process to end")


def test_a_failing_agent_stops_the_whole_cluster(tmp_path: Path) -> None:
    """Kill one agent mid-run with no restarts allowed: ss-cluster exits non-zero, names it, and leaves no
    process behind (with restarts, tests/test_fault_tolerance.py: the run completes)."""
    with Processes(tmp_path / "launcher") as procs:
        cluster, listed = endless_cluster(procs, tmp_path / "run", 2, "--max-restarts", "0")
        victim = next(p for p in listed if p["role"] == "agent" and p["id"] == 1)
        subprocess.run(["kill", "-9", str(victim["pid"])], check=True)
        assert cluster.wait(timeout=120) != 0
        assert "agent 1" in procs.log("cluster")
        assert "OOM killer" in procs.log("cluster")  # a SIGKILL no one in the cluster sent: where to look
        wait_all_ended(listed)


def test_agents_exit_with_a_clear_error_when_the_env_server_dies(tmp_path: Path) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    out = tmp_path / "run"
    config = tmp_path / "fast.toml"
    config.write_text("step_deadline_s = 3.0\nreset_deadline_s = 3.0\nround_deadline_s = 3.0\n")
    common = ["--coordinator", endpoint, "--out", str(out)]
    with Processes(tmp_path / "logs") as procs:
        procs.start("coordinator", script("ss-coordinator"), "--env", "predation", "--agents", "2",
                    "--episodes", "100000", "--batch", "2", "--config", str(config), "--bind", endpoint,
                    "--out", str(out))
        env = procs.start("envserver", script("ss-envserver"), *common)
        agents = [procs.start(f"agent-{i}", script("ss-agent"), "--id", str(i), *common) for i in range(2)]
        wait_for_updates(out, 1)
        env.kill()
        for i, agent in enumerate(agents):
            assert agent.wait(timeout=60) == 1
            assert "env server" in procs.log(f"agent-{i}")


def test_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    with Processes(tmp_path / "launcher") as procs:
        cluster, listed = endless_cluster(procs, tmp_path / "run", 1)
        cluster.send_signal(signal.SIGINT)
        assert cluster.wait(timeout=60) == 130
        assert "interrupted" in procs.log("cluster")
        wait_all_ended(listed)


@pytest.mark.parametrize("env", ["cleanup", "harvest"])
def test_gridworlds_train_under_the_cluster(tmp_path: Path, env: str) -> None:
    small = tmp_path / "small.toml"
    small.write_text("hidden = [32]\n")
    out = tmp_path / env
    with Processes(tmp_path / "launcher") as procs:
        cluster = procs.start("cluster", script("ss-cluster"), "--env", env, "--agents", "4", "--episodes", "4",
                              "--batch", "2", "--config", str(small), "--out", str(out), "--no-progress")
        try:
            assert cluster.wait(timeout=500) == 0, procs.log("cluster")
        finally:
            procs.adopt(out / "processes.json")
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and "equality" in rows[0]
    assert len((out / "agents/3/train.csv").read_text().splitlines()) == 3

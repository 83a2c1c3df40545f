"""The run survives its processes: a killed agent, env server or coordinator is restarted by `ss-cluster`
and the run completes; a paused agent costs default actions and gaps, never the run. Real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from coordinator.launcher import free_port
from protocol.run.csvlog import read_rows
from tests.procs import Processes, script, wait_for_updates, wait_until

pytestmark = pytest.mark.slow

UPDATES = 120
# short deadlines so a fault costs seconds; everything else is the navigation default
FAST = "step_deadline_s = 2.0\nround_deadline_s = 2.0\nreset_deadline_s = 60.0\ncheckpoint_every = 5\n"


def start_cluster(procs: Processes, tmp_path: Path) -> Path:
    (tmp_path / "fast.toml").write_text(FAST)
    out = tmp_path / "run"
    procs.start("cluster", script("ss-cluster"), "--env", "navigation", "--episodes", str(UPDATES * 4), "--batch",
                "4", "--config", str(tmp_path / "fast.toml"), "--out", str(out), "--no-progress")
    wait_until(lambda: (out / "processes.json").exists(), 60, "processes.json")
    wait_for_updates(out, 30)
    return out


def pid_of(out: Path, role: str, agent: int | None = None) -> int:
    listed = json.loads((out / "processes.json").read_text())
    return next(p["pid"] for p in listed if p["role"] == role and p["id"] == agent)


def finish(procs: Processes, out: Path) -> list[dict]:
    """Wait for ss-cluster to exit 0 with every update in metrics.csv; returns processes.json."""
    cluster = procs.procs[0]
    try:
        assert cluster.wait(timeout=400) == 0, procs.log("cluster")
    finally:
        listed = procs.adopt(out / "processes.json")
    assert len(read_rows(out / "metrics.csv")) == UPDATES
    return listed


@pytest.mark.parametrize("role", ["agent", "envserver", "coordinator"])
def test_a_killed_process_is_restarted_and_the_run_completes(tmp_path: Path, role: str) -> None:
    with Processes(tmp_path / "logs") as procs:
        out = start_cluster(procs, tmp_path)
        who = 1 if role == "agent" else None
        os.kill(pid_of(out, role, who), signal.SIGKILL)
        listed = finish(procs, out)
        assert "died (killed by SIGKILL); restarting it" in procs.log("cluster")
        restarted = next(p for p in listed if p["role"] == role and p["id"] == who)
        assert restarted["restarts"] == 1
        for i in range(3):  # every agent's train.csv reaches the last update (missed ones as nan rows)
            rows = read_rows(out / "agents" / str(i) / "train.csv")
            assert [int(r["update"]) for r in rows] == list(range(1, UPDATES + 1))
        if role == "agent":
            assert "behind the env server" in (out / "logs/agent-1.log").read_text()
        if role == "coordinator":
            assert "rebuilding membership from heartbeats" in (out / "logs/coordinator.log").read_text()


def test_an_agent_paused_for_20s_catches_up(tmp_path: Path) -> None:
    with Processes(tmp_path / "logs") as procs:
        out = start_cluster(procs, tmp_path)
        paused = pid_of(out, "agent", 1)
        os.kill(paused, signal.SIGSTOP)
        resume_at = time.monotonic() + 20
        try:
            wait_for_updates(out, len(read_rows(out / "metrics.csv")) + 3, timeout_s=60)  # the others go on
            time.sleep(max(0.0, resume_at - time.monotonic()))  # the fault is a 20 s pause, not a synchronisation
        finally:
            os.kill(paused, signal.SIGCONT)
        finish(procs, out)
        metrics = read_rows(out / "metrics.csv")
        assert sum(int(r["missing_actions"]) for r in metrics) > 0  # its missed steps are counted
        gaps = [float(r["comm_gaps"]) for r in read_rows(out / "agents/0/train.csv") if r["comm_gaps"] != "nan"]
        assert sum(gaps) > 0  # and its neighbour's missed rounds
        assert "restart" not in procs.log("cluster")
        # 20 s is past ZeroMQ's 5 s heartbeat timeout: its connections dropped, and it was re-attached
        assert "agent 1 re-attached from a new connection" in (out / "logs/envserver.log").read_text()
        coordinator = (out / "logs/coordinator.log").read_text()  # liveness: the coordinator noticed, and saw it back
        assert "agent 1 has been silent" in coordinator and "agent 1 is back" in coordinator


def test_a_coordinator_killed_before_start_is_restarted_by_hand_and_the_run_completes(tmp_path: Path) -> None:
    """Registration is not lost with the coordinator: the processes already waiting keep resending HELLO,
    a new coordinator at the same endpoint takes them in, and the run is bit-identical to ss-sim."""
    opts = ["--env", "navigation", "--episodes", "8", "--batch", "2", "--seed", "6"]
    out, endpoint = tmp_path / "run", f"tcp://127.0.0.1:{free_port()}"
    common = ["--coordinator", endpoint, "--out", str(out)]
    coordinator = [script("ss-coordinator"), *opts, "--bind", endpoint, "--out", str(out)]
    with Processes(tmp_path / "logs") as procs:
        first = procs.start("coordinator-1", *coordinator)
        others = [procs.start("envserver", script("ss-envserver"), *common)]
        others += [procs.start(f"agent-{i}", script("ss-agent"), "--id", str(i), *common) for i in range(2)]
        wait_until(lambda: "registered agent 1" in procs.log("coordinator-1")
                   and "registered agent 0" in procs.log("coordinator-1"), 120, "two agents to register")
        first.kill()  # before START: agent 2 has not even started
        first.wait()
        second = procs.start("coordinator-2", *coordinator)
        others.append(procs.start("agent-2", script("ss-agent"), "--id", "2", *common))
        for name, proc in [("coordinator-2", second), ("envserver", others[0])] + \
                [(f"agent-{i}", p) for i, p in enumerate(others[1:])]:
            assert proc.wait(timeout=300) == 0, procs.log(name)[-3000:]
    sim = subprocess.run([script("ss-sim"), *opts, "--out", str(tmp_path / "sim"), "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert sim.returncode == 0, sim.stderr
    assert (out / "metrics.csv").read_bytes() == (tmp_path / "sim" / "metrics.csv").read_bytes()


def test_the_local_cluster_script_restarts_a_killed_agent(tmp_path: Path) -> None:
    """deploy/local-cluster.sh supervises like ss-cluster: a kill -9'd agent comes back at its pinned port."""
    (tmp_path / "fast.toml").write_text(FAST)
    out = tmp_path / "run"
    deploy = Path(__file__).resolve().parents[1] / "deploy/local-cluster.sh"
    with Processes(tmp_path / "logs") as procs:
        local = procs.start("local", "env", f"PATH={Path(script('ss-agent')).parent}:/usr/bin:/bin",
                            f"SS_COORDINATOR_PORT={free_port()}", "bash", str(deploy), str(out), "--env", "navigation",
                            "--episodes", str(UPDATES * 4), "--batch", "4", "--config", str(tmp_path / "fast.toml"))
        wait_for_updates(out, 30)
        os.kill(int((out / "logs/agent-1.pid").read_text()), signal.SIGKILL)
        try:
            assert local.wait(timeout=400) == 0, procs.log("local")
        finally:
            procs.extra_pids += [int(p.read_text()) for p in (out / "logs").glob("*.pid")]
    assert "agent-1 died (signal 9); restarting it (1 of 3)" in procs.log("local")
    assert len(read_rows(out / "metrics.csv")) == UPDATES
    assert len(read_rows(out / "agents/1/train.csv")) == UPDATES  # missed updates as nan rows


def test_cl_central_learner_goes_on_without_a_paused_agents_report(tmp_path: Path) -> None:
    """CL: an agent paused past the reset deadline misses its REWARD; the central learner answers the others,
    skips that critic step, and tells the late agent which update to join: the run completes."""
    (tmp_path / "fast.toml").write_text(FAST.replace("reset_deadline_s = 60.0", "reset_deadline_s = 5.0"))
    out = tmp_path / "run"
    with Processes(tmp_path / "logs") as procs:
        procs.start("cluster", script("ss-cluster"), "--env", "navigation", "--algo", "cl", "--episodes",
                    str(UPDATES * 4), "--batch", "4", "--config", str(tmp_path / "fast.toml"), "--out", str(out),
                    "--no-progress")
        wait_until(lambda: (out / "processes.json").exists(), 60, "processes.json")
        wait_for_updates(out, 20)
        pid = pid_of(out, "agent", 1)
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_until(lambda: "no REWARD from agents [1]" in (out / "logs/learner.log").read_text(), 120,
                       "the central learner to go on without agent 1")
        finally:
            os.kill(pid, signal.SIGCONT)
        finish(procs, out)
    learner_rows = read_rows(out / "logs/learner.train.csv")
    assert len(learner_rows) == UPDATES and any(r["value_loss"] == "nan" for r in learner_rows)
    assert "is stale: join update" in (out / "logs/learner.log").read_text()

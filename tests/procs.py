"""Start real processes for integration tests and always stop them by pid, even when a test fails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def script(name: str) -> str:
    """Path of a console script installed next to this interpreter (ss-sim, ss-cluster, ...)."""
    return str(BIN / name)


class Processes:
    """Context manager: every process started through it is killed (by pid) on exit."""

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen] = []
        self.extra_pids: list[int] = []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")
        proc = subprocess.Popen(list(args), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def adopt(self, processes_json: Path) -> list[dict]:
        """Also stop every pid listed in a cluster's processes.json."""
        if not processes_json.exists():
            return []
        listed = json.loads(processes_json.read_text())
        self.extra_pids += [p["pid"] for p in listed]
        return listed

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in self.extra_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def alive(pid: int) -> bool:
    """True if the pid runs (zombies count as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def wait_until(condition, timeout_s: float, what: str, interval_s: float = 0.2) -> None:
    """Poll `condition` until true; fail with `what` after a generous timeout."""
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def wait_for_updates(run_dir: Path, updates: int, timeout_s: float = 300) -> None:
    """Wait until the run's metrics.csv holds at least `updates` rows."""
    metrics = Path(run_dir) / "metrics.csv"
    wait_until(lambda: metrics.exists() and len(metrics.read_text().splitlines()) > updates, timeout_s,
               f"{updates} update(s) in {metrics}")


def run_sim_and_cluster(tmp_path: Path, opts: list[str]) -> tuple[Path, Path, list[dict]]:
    """ss-sim and ss-cluster with the same options; returns (sim dir, cluster dir, processes.json entries)."""
    sim = subprocess.run([script("ss-sim"), *opts, "--out", str(tmp_path / "sim"), "--no-progress"],
                 capture_output=True, text=True, timeout=300)
    assert sim.returncode == 0, sim.stderr
    with Processes(tmp_path / "launcher") as procs:
        cluster = procs.start("cluster", script("ss-cluster"), *opts, "--out", str(tmp_path / "cl"), "--no-progress")
        try:
            code = cluster.wait(timeout=500)
        finally:
            listed = procs.adopt(tmp_path / "cl" / "processes.json")
        assert code == 0, procs.log("cluster")
    return tmp_path / "sim", tmp_path / "cl", listed


def start_by_hand(procs: Processes, out: Path, episodes: int, agents: int = 3,
                  env_options: tuple[str, ...] = ()) -> tuple[str, dict[str, subprocess.Popen]]:
    """A navigation run (batch 2) started as separate processes on loopback: the coordinator, the env server
    (with `env_options`) and `agents` agents. Returns (the coordinator's endpoint, name -> process)."""
    from coordinator.launcher import free_port

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    common = ["--coordinator", endpoint, "--out", str(out)]
    started = {"coordinator": procs.start("coordinator", script("ss-coordinator"), "--env", "navigation",
                                          "--agents", str(agents), "--episodes", str(episodes), "--batch", "2",
                                          "--bind", endpoint, "--out", str(out)),
               "envserver": procs.start("envserver", script("ss-envserver"), *common, *env_options)}
    for i in range(agents):
        started[f"agent-{i}"] = procs.start(f"agent-{i}", script("ss-agent"), "--id", str(i), *common)
    return endpoint, started

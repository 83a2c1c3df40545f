"""`ss-cluster --backend ray` on a real 3-node Ray cluster (`ray.cluster_utils.Cluster`) inside a network
namespace with only loopback up, where Ray advertises 127.0.0.1: a placed run is bit-identical to ss-sim
with its processes on different nodes; a node removed mid-run has its processes restarted elsewhere by Ray
and the run completes; a placement Ray cannot satisfy and an unreachable address are one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from coordinator.launcher import free_port
from tests.netns import unavailable
from tests.procs import script, wait_until
from tests.raynodes import NODE_CPUS, RayNodes

ray = pytest.importorskip("ray", reason="the Ray backend's tests need ssmarl[ray]")

RAY_OPTS = ["--backend", "ray", "--ray-cpus", "0.5", "--no-progress", "--no-resume"]
OPTS = ["--env", "navigation", "--batch", "2", "--seed", "3"]


def cluster(nodes: RayNodes, out: Path, *options: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(nodes.cmd(script("ss-cluster"), *RAY_OPTS, "--ray-address", nodes.address, *OPTS,
                                    *options, "--out", str(out)), capture_output=True, text=True, timeout=timeout)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def nothing_left(out: Path) -> None:
    listed = json.loads((out / "processes.json").read_text())
    wait_until(lambda: not any(alive(p["pid"]) for p in listed), timeout_s=30, what="every process stopped")


needs_namespaces = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayNodes]:
    with RayNodes(tmp_path_factory.mktemp("ray")) as made:
        yield made


@pytest.mark.slow
@pytest.mark.timeout(600)
@needs_namespaces
def test_a_ray_placed_curve_run_spreads_over_the_nodes_and_is_bit_identical_to_the_simulator(
        nodes: RayNodes, tmp_path: Path) -> None:
    done = cluster(nodes, tmp_path / "ray", "--episodes", "8", "--curve")
    assert done.returncode == 0, done.stderr[-3000:]
    assert all("--keys" in p["cmd"] for p in json.loads((tmp_path / "ray" / "processes.json").read_text()))
    listed = json.loads((tmp_path / "ray" / "processes.json").read_text())
    assert {p["node"] for p in listed} == set(nodes.nodes)  # coordinator, env server, 3 agents over 3 nodes
    assert all(p["host"] == "127.0.0.1" for p in listed)
    nothing_left(tmp_path / "ray")
    sim = subprocess.run([script("ss-sim"), *OPTS, "--episodes", "8", "--out", str(tmp_path / "sim"),
                          "--no-progress"], capture_output=True, text=True, timeout=300)
    assert sim.returncode == 0, sim.stderr
    assert (tmp_path / "ray" / "metrics.csv").read_bytes() == (tmp_path / "sim" / "metrics.csv").read_bytes()


@pytest.mark.slow
@pytest.mark.timeout(300)
@needs_namespaces
def test_strict_spread_over_fewer_nodes_than_processes_is_refused_in_one_line(nodes: RayNodes,
                                                                            tmp_path: Path) -> None:
    done = cluster(nodes, tmp_path / "run", "--episodes", "8", "--ray-spread", "strict")
    assert done.returncode == 1
    assert "error: --ray-spread strict needs a node for each of the 5 processes; the Ray cluster has 3" in done.stderr
    assert not (tmp_path / "run" / "processes.json").exists()  # nothing was started


@pytest.mark.slow
@pytest.mark.timeout(300)
@needs_namespaces
def test_more_cpus_than_the_nodes_have_is_refused_in_one_line(nodes: RayNodes, tmp_path: Path) -> None:
    done = cluster(nodes, tmp_path / "run", "--episodes", "8", "--ray-cpus", str(NODE_CPUS + 1))
    assert done.returncode == 1
    assert ("error: 5 processes of 5 CPU each do not fit in the Ray cluster (12 CPUs, at most 4 on a node); "
            "lower --ray-cpus or add nodes") in done.stderr
    assert not (tmp_path / "run" / "processes.json").exists()


def test_an_unreachable_ray_address_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    done = subprocess.run([script("ss-cluster"), "--backend", "ray", "--ray-address", address, *OPTS,
                           "--episodes", "8", "--out", str(tmp_path / "run"), "--no-progress"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: cannot reach a Ray cluster at {address} (Connection refused); start one with `ray start --head` "
        "or give its address with --ray-address"]
    assert not (tmp_path / "run" / "processes.json").exists()


@pytest.mark.parametrize("given, said", [
    (["--ray-address", "127.0.0.1:6379"], "--ray-address needs --backend ray"),
    (["--ray-spread", "strict", "--ray-cpus", "0.5"], "--ray-spread, --ray-cpus needs --backend ray"),
])
def test_ray_options_without_the_ray_backend_are_a_usage_error(tmp_path: Path, given: list[str], said: str) -> None:
    done = subprocess.run([script("ss-cluster"), *given, *OPTS, "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and said in done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
@needs_namespaces
def test_a_node_removed_mid_run_has_its_processes_restarted_elsewhere_and_the_run_completes(
        tmp_path: Path) -> None:
    out = tmp_path / "run"
    with RayNodes(tmp_path) as own:
        run = subprocess.Popen(own.cmd(script("ss-cluster"), *RAY_OPTS, "--ray-address", own.address, *OPTS,
                                       "--episodes", "80", "--out", str(out)),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            metrics = out / "metrics.csv"
            wait_until(lambda: metrics.exists() and len(metrics.read_text().splitlines()) > 5, timeout_s=300,
                       what="5 updates")
            listed = json.loads((out / "processes.json").read_text())
            head = own.nodes[0]  # the driver's node; another one goes
            lost = next(p["node"] for p in listed if p["node"] != head)
            moved = {(p["role"], p["id"]) for p in listed if p["node"] == lost}
            own.remove(lost)
            # and a process on a surviving node killed by a signal: the launcher asks Ray to restart its actor
            rows = len(metrics.read_text().splitlines())
            wait_until(lambda: len(metrics.read_text().splitlines()) > rows + 3, timeout_s=300,
                       what="3 updates after the node loss")
            agents = [p for p in json.loads((out / "processes.json").read_text()) if p["role"] == "agent"]
            victim = min(agents, key=lambda p: (p["role"], p["id"]) in moved)  # one that did not move, if any
            os.kill(victim["pid"], signal.SIGKILL)
            _, stderr = run.communicate(timeout=500)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
        assert run.returncode == 0, stderr[-3000:]
        after = json.loads((out / "processes.json").read_text())
        for p in after:
            if (p["role"], p["id"]) in moved:
                assert p["restarts"] >= 1 and p["node"] != lost, p
        assert "was lost); restarting it" in stderr
        killed = next(p for p in after if (p["role"], p["id"]) == ("agent", victim["id"]))
        assert killed["restarts"] == victim["restarts"] + 1 and killed["pid"] != victim["pid"]
        assert f"agent {victim['id']} (pid {victim['pid']}) died (killed by SIGKILL); restarting it" in stderr
        assert len(metrics.read_text().splitlines()) == 1 + 40  # every update of the run
        nothing_left(out)

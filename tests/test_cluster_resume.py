"""Cluster runs resume like ss-sim: from the newest update that every process (each agent, the env
server's world, CL's central learner) holds a checkpoint of, bit-identically to one straight run, also
after a crash left the processes one checkpoint apart. Checkpoints that share no update stop every
process at once, with the reason."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.procs import Processes, alive, script
from tests.test_cluster import flat_params

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]  # real multi-process clusters

AGENTS = 3


def options(tmp_path: Path, algo: str, episodes: int) -> list[str]:
    small = tmp_path / "small.toml"
    small.write_text("hidden = [16]\ncheckpoint_every = 1\n")
    return ["--env", "predation", "--agents", str(AGENTS), "--batch", "4", "--seed", "2", "--algo", algo,
            "--episodes", str(episodes), "--config", str(small), "--no-progress"]


def cluster(tmp_path: Path, name: str, opts: list[str], out: Path) -> tuple[int, str, list[dict]]:
    """Run ss-cluster to its end; returns its exit code, its output and the processes it listed."""
    with Processes(tmp_path / "launcher") as procs:
        proc = procs.start(name, script("ss-cluster"), *opts, "--out", str(out))
        try:
            code = proc.wait(timeout=300)
        finally:
            listed = procs.adopt(out / "processes.json")
    return code, procs.log(name), listed


def same_run(a: Path, b: Path) -> None:
    assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
    for i in range(AGENTS):
        assert (a / f"agents/{i}/train.csv").read_bytes() == (b / f"agents/{i}/train.csv").read_bytes(), i
        np.testing.assert_array_equal(flat_params(a, i), flat_params(b, i))


@pytest.mark.parametrize("algo", ["ss", "cl"])
def test_cluster_resumes_bit_identically_after_a_crash_left_the_world_one_checkpoint_behind(
        tmp_path: Path, algo: str) -> None:
    straight = tmp_path / "sim"
    sim = subprocess.run([script("ss-sim"), *options(tmp_path, algo, 16), "--out", str(straight)],
                         capture_output=True, text=True, timeout=300)
    assert sim.returncode == 0, sim.stderr

    out = tmp_path / "cl"
    code, log, _ = cluster(tmp_path, "first", options(tmp_path, algo, 12), out)  # 3 of 4 updates
    assert code == 0, log
    world = out / "world_checkpoint.json"
    world.with_name(world.name + ".prev").replace(world)  # the env server died before checkpointing update 3

    code, log, listed = cluster(tmp_path, "resumed", options(tmp_path, algo, 16), out)
    assert code == 0, log
    assert "resuming from update 2" in (out / "logs/coordinator.log").read_text()
    same_run(out, straight)
    # the audit logs hold both sessions (each run id begins with its HELLO) and verify
    audit = subprocess.run([script("ss-audit"), str(out), "--verify"], capture_output=True, text=True, timeout=60)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    received = json.loads((out / "agents/0/received.json").read_text())["received"]
    assert received["DIRECTORY"]["-1"]["messages"] == 2
    if algo == "cl":
        assert (out / "logs/learner.train.csv").read_bytes() == (straight / "logs/learner.train.csv").read_bytes()
    assert not any(alive(p["pid"]) for p in listed)


def test_checkpoints_without_a_common_update_stop_every_process_at_once(tmp_path: Path) -> None:
    out = tmp_path / "cl"
    code, log, _ = cluster(tmp_path, "first", options(tmp_path, "ss", 8), out)
    assert code == 0, log
    for name in ("checkpoint.pt", "checkpoint.pt.prev"):
        (out / "agents/1" / name).unlink()  # agent 1 lost its checkpoints: no update all processes hold

    code, log, listed = cluster(tmp_path, "refused", options(tmp_path, "ss", 16), out)
    assert code == 1  # within the test's timeout, far below the 600 s registration deadline
    coordinator_log = (out / "logs/coordinator.log").read_text()
    assert "checkpoints disagree" in coordinator_log and "agent 1: none" in coordinator_log, coordinator_log
    assert not any(alive(p["pid"]) for p in listed)

    code, log, _ = cluster(tmp_path, "over", [*options(tmp_path, "ss", 8), "--no-resume"], out)
    assert code == 0, log
    code, log, _ = cluster(tmp_path, "again", options(tmp_path, "ss", 8), out)  # finished: resumes at its end
    assert code == 0, log
    assert "resuming from update 2" in (out / "logs/coordinator.log").read_text()

"""`--tensorboard`: metrics.csv and each agent's train.csv as TensorBoard events, read back with
tensorboard's own reader; in a cluster each agent's events are written by that agent's process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from coordinator.sim import Simulation
from protocol.run.config import RunConfig
from protocol.run.csvlog import CsvLog, read_rows
from protocol.run.rundir import RunDir
from tests.procs import run_sim_and_cluster

PRIVATE = ("kappa", "value_loss", "policy_loss", "entropy", "suggestion_mse", "comm_gaps", "mean_reward")


def scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of every scalar in the event files of `directory`."""
    events = EventAccumulator(str(directory))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def assert_mirrors_csv(directory: Path, csv_path: Path) -> dict[str, list[tuple[int, float]]]:
    """Every numeric CSV column is a scalar with the row's episode as its step and the value (as float32)."""
    got, rows = scalars(directory), read_rows(csv_path)
    for column in rows[0]:
        if column in ("episode", "update"):
            continue
        expected = [(int(r["episode"]), np.float32(float(r[column]))) for r in rows]
        assert [(step, np.float32(v)) for step, v in got[column]] == expected, column
    return got


def test_sim_writes_public_and_private_scalars_apart(tmp_path: Path) -> None:
    config = RunConfig(env="predation", agents=2, episodes=16, batch=4)
    Simulation(config, tmp_path, tensorboard=True).run(progress=False)
    rd = RunDir(tmp_path)
    world = assert_mirrors_csv(rd.tensorboard, rd.metrics)
    assert {"collective_return", "normalized_return", "cc_rate"} <= set(world)
    assert not set(PRIVATE) & set(world)  # no agent's private statistic among the public metrics
    for i in range(2):
        assert set(PRIVATE) <= set(assert_mirrors_csv(rd.agent_tensorboard(i), rd.train(i)))


def test_missing_tensorboard_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(RuntimeError, match=r"pip install 'ssmarl\[tensorboard\]'"):
        CsvLog(tmp_path / "m.csv", ("episode", "x"), tensorboard=tmp_path / "tb")


@pytest.mark.slow
def test_cluster_events_equal_the_sims_and_each_agent_writes_its_own(tmp_path: Path) -> None:
    opts = ["--env", "navigation", "--agents", "3", "--episodes", "12", "--batch", "4", "--tensorboard"]
    sim, cluster, listed = run_sim_and_cluster(tmp_path, opts)
    for sub in ("tensorboard", *(f"agents/{i}/tensorboard" for i in range(3))):
        assert scalars(cluster / sub) == scalars(sim / sub), sub
    pids = {p["id"]: p["pid"] for p in json.loads((cluster / "processes.json").read_text()) if p["role"] == "agent"}
    for i, pid in pids.items():
        files = list((cluster / "agents" / str(i) / "tensorboard").iterdir())
        assert files and all(f.name.split(".")[-2] == str(pid) for f in files), (i, pid, files)

"""ss-sim: determinism, resume from checkpoints, config resolution, and the CLI contract."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import numpy as np
import pytest

from coordinator.sim import Simulation
from protocol.run.config import PAPER_DEFAULTS, SHIPPED_DEFAULTS, RunConfig, load_toml, resolve
from tests.procs import script


def small(**overrides) -> RunConfig:
    return resolve(None, {"env": "predation", "agents": 3, "episodes": 16, "batch": 4, "seed": 5, **overrides})


def run(config: RunConfig, out: Path, resume: bool = False) -> Simulation:
    sim = Simulation(config, out)
    if resume:
        sim.resume()
    sim.run(progress=False)
    return sim


def test_same_seed_same_bytes_different_seed_differs(tmp_path: Path) -> None:
    run(small(), tmp_path / "a")
    run(small(), tmp_path / "b")
    run(small(seed=6), tmp_path / "c")
    assert (tmp_path / "a/metrics.csv").read_bytes() == (tmp_path / "b/metrics.csv").read_bytes()
    assert (tmp_path / "a/agents/2/train.csv").read_bytes() == (tmp_path / "b/agents/2/train.csv").read_bytes()
    assert (tmp_path / "a/metrics.csv").read_bytes() != (tmp_path / "c/metrics.csv").read_bytes()


def test_resume_continues_bit_identically(tmp_path: Path) -> None:
    """Stop after 2 of 4 updates, resume with the full episode count: same files as one straight run."""
    straight = run(small(checkpoint_every=1), tmp_path / "straight")
    run(small(episodes=8, checkpoint_every=1), tmp_path / "resumed")
    resumed = run(small(checkpoint_every=1), tmp_path / "resumed", resume=True)
    assert resumed.start_update == 2
    for name in ("metrics.csv", "agents/0/train.csv", "agents/2/train.csv"):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "straight" / name).read_bytes()
    for a, b in zip(straight.learners, resumed.learners):
        np.testing.assert_array_equal(a.flat_parameters(), b.flat_parameters())


def test_resume_takes_the_newest_update_that_every_process_holds(tmp_path: Path) -> None:
    """A crash between two processes' checkpoints leaves them one update apart: resume from the older."""
    run(small(checkpoint_every=1), tmp_path / "straight")
    run(small(episodes=12, checkpoint_every=1), tmp_path / "torn")  # 3 of 4 updates
    agent1 = tmp_path / "torn/agents/1/checkpoint.pt"
    agent1.with_name("checkpoint.pt.prev").replace(agent1)  # agent 1 never wrote update 3
    resumed = Simulation(small(checkpoint_every=1), tmp_path / "torn")
    assert resumed.resume() == 2
    resumed.run(progress=False)
    for name in ("metrics.csv", "agents/0/train.csv", "agents/1/train.csv"):
        assert (tmp_path / "torn" / name).read_bytes() == (tmp_path / "straight" / name).read_bytes(), name

    agent1.unlink()
    agent1.with_name("checkpoint.pt.prev").unlink()
    with pytest.raises(RuntimeError, match=r"checkpoints disagree .*agent 1: none"):
        Simulation(small(), tmp_path / "torn").resume()


def test_config_precedence_cli_over_file_over_env_defaults(tmp_path: Path) -> None:
    config = resolve({"env": "navigation", "seed": 3, "rho": 2.0}, {"seed": 9, "rho": None})
    assert (config.env, config.seed, config.rho) == ("navigation", 9, 2.0)
    assert config.agents == PAPER_DEFAULTS["navigation"].agents == 3
    assert config.actor_lr == SHIPPED_DEFAULTS["navigation"].actor_lr == 1e-3
    paper = resolve(None, {"preset": "paper"})
    assert (paper.actor_lr, paper.critic_lr, paper.rho) == (1e-4, 1e-4, 0.1)
    shipped = resolve(None, {})
    assert (shipped.actor_lr, shipped.critic_lr, shipped.rho) == (1e-3, 1e-3, 10.0)
    with pytest.raises(ValueError, match="unknown config keys"):
        resolve({"episods": 3}, {})
    with pytest.raises(ValueError, match="symmetric"):
        resolve({"env": "navigation", "neighbors": {"0": [1], "1": [], "2": []}}, {})


def test_config_round_trips_through_toml(tmp_path: Path) -> None:
    from protocol.run.config import write_toml

    config = dataclasses.replace(small(), neighbors={0: (1,), 1: (0, 2), 2: (1,)})
    write_toml(config, tmp_path / "c.toml")
    assert RunConfig.from_dict(load_toml(tmp_path / "c.toml")) == config


def test_cli_writes_the_run_directory_and_refuses_a_different_config(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [script("ss-sim"), "--env", "navigation", "--episodes", "4", "--batch", "2", "--out", str(out)]
    done = subprocess.run([*args, "--no-progress"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in ("config.toml", "metrics.csv", "agents/0/train.csv", "agents/2/checkpoint.pt"):
        assert (out / name).exists(), name
    assert len((out / "metrics.csv").read_text().splitlines()) == 3
    clash = subprocess.run([*args, "--seed", "4", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert clash.returncode == 2 and "different config (seed)" in clash.stderr
    bad = subprocess.run([script("ss-sim"), "--agents", "0", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "agents must be >= 1" in bad.stderr

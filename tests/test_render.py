"""Episode GIFs: frames of every world, render_episode after a tiny ss-sim run, and `ss-sim --render`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageSequence

from coordinator.cli import sim_main
from coordinator.research.render import BAR, render_episode, with_time_bar
from envserver.worlds._common import PIXELS_PER_CELL as CELL
from coordinator.sim import Simulation
from envserver.worlds import make_world
from envserver.worlds._common import AGENT_COLOURS
from protocol.run.config import RunConfig


def gif_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a GIF, decoded to RGB arrays."""
    with Image.open(path) as gif:
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]


def tiny_run(tmp_path: Path, env: str) -> Path:
    """Train 2 agents for one update of 2 episodes with small nets; returns the run directory."""
    config = dataclasses.replace(RunConfig(), env=env, agents=2, episodes=2, batch=2, hidden=(16,),
                                 iterations=1)
    out = tmp_path / env
    Simulation(config, out).run(progress=False)
    return out


def test_predation_frame_shows_prey_and_predators() -> None:
    world = make_world("predation", 2, 1, 0)
    world.reset()
    world.place(positions=[[3.0], [20.0]], prey=[10.0])
    frame = world.render_rgb()
    assert frame.shape == (3 * CELL, 31 * CELL, 3) and frame.dtype == np.uint8
    assert frame[0, 10 * CELL].tolist() == [255, 64, 64]  # prey, row 0
    assert frame[CELL, 3 * CELL].tolist() == AGENT_COLOURS[0].tolist()
    assert frame[2 * CELL, 20 * CELL].tolist() == AGENT_COLOURS[1].tolist()


def test_navigation_frame_shows_agents_over_targets() -> None:
    world = make_world("navigation", 2, 1, 0)
    world.reset()
    world.place(cells=[[[0, 0]], [[4, 2]]], targets=[[[1, 1]], [[0, 0]]])
    frame = world.render_rgb()
    assert frame.shape == (5 * CELL, 5 * CELL, 3)
    assert frame[0, 0].tolist() == AGENT_COLOURS[0].tolist()  # agent 0 stands on agent 1's target
    assert frame[2 * CELL, 4 * CELL].tolist() == AGENT_COLOURS[1].tolist()  # (x=4, y=2)
    assert frame[CELL, CELL].tolist() == (AGENT_COLOURS[0] // 2).tolist()  # agent 0's target


def test_time_bar_grows_at_every_step() -> None:
    frame = np.full((2, 5, 3), 7, dtype=np.uint8)
    framed = [with_time_bar(frame, t, 12) for t in range(13)]
    assert framed[0].shape == (3 * 2 + BAR, 15, 3)  # enlarged x3 to be at least T = 12 pixels wide
    assert (framed[0][:6] == 7).all() and not framed[0][6:].any()
    assert framed[12][6:].all()
    assert len({f.tobytes() for f in framed}) == 13


@pytest.mark.parametrize("env", ["harvest", "predation"])
def test_render_episode_writes_a_gif_of_the_trained_policies(tmp_path: Path, env: str) -> None:
    run = tiny_run(tmp_path, env)
    gif = render_episode(run, tmp_path / "out" / "episode.gif", seed=3)
    frames = gif_frames(gif)
    horizon = make_world(env, 2, 1, 0).spec.horizon
    picture = make_world(env, 2, 1, 0).render_rgb()
    assert len(frames) == horizon + 1
    assert frames[0].shape == (picture.shape[0] + BAR, picture.shape[1], 3)
    pictures = {f[:-BAR].tobytes() for f in frames}  # without the time bar
    assert len(pictures) > 1
    assert render_episode(run, tmp_path / "again.gif", seed=3).read_bytes() == gif.read_bytes()


def test_render_needs_checkpoints(tmp_path: Path) -> None:
    run = tiny_run(tmp_path, "predation")
    (run / "agents" / "1" / "checkpoint.pt").unlink()
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        render_episode(run, tmp_path / "x.gif")


def test_ss_sim_render_option(tmp_path: Path) -> None:
    gif = tmp_path / "sim.gif"
    result = CliRunner().invoke(sim_main, [
        "--env", "predation", "--agents", "2", "--episodes", "2", "--batch", "2",
        "--out", str(tmp_path / "run"), "--no-progress", "--render", str(gif)])
    assert result.exit_code == 0, result.output
    assert len(gif_frames(gif)) == 31

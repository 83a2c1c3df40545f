"""Play one episode of a trained run with every agent's policy and write it as an animated GIF.

`render_episode(DIR, OUT.gif)` reads DIR/config.toml and DIR/agents/<id>/checkpoint.pt, plays one
episode in a single copy (batch 1) of the run's world, each agent acting with its own pi_ii (sampled,
or greedy), and writes T + 1 frames (the start, then the state after every step). Each frame carries a
time bar under the picture that grows at every step, which also keeps consecutive frames distinct (GIF
writers merge identical consecutive frames).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from agent.policy import Policy
from coordinator.research.evaluate import load_policies
from envserver.worlds import World, make_world
from protocol.run.config import RunConfig, load_toml
from protocol.run.rundir import RunDir

BAR = 4  # pixel rows of the time bar
BAR_COLOUR = (255, 255, 255)


def with_time_bar(frame: np.ndarray, t: int, horizon: int) -> np.ndarray:
    """The frame with BAR rows below it, filled left to right to t / T. A frame narrower than T pixels
    is first enlarged by an integer factor, so that the bar grows at every step."""
    k = -(-horizon // frame.shape[1])
    frame = np.repeat(np.repeat(frame, k, axis=0), k, axis=1)
    bar = np.zeros((BAR, frame.shape[1], 3), dtype=np.uint8)
    bar[:, : frame.shape[1] * t // horizon] = BAR_COLOUR
    return np.concatenate([frame, bar], axis=0)


def play_episode(world: World, policies: list[Policy], greedy: bool = False) -> list[np.ndarray]:
    """One episode in copy 0, every agent acting with its own policy; returns the T + 1 frames."""
    spec = world.spec
    result = world.reset()
    frames = [with_time_bar(world.render_rgb(0), 0, spec.horizon)]
    for t in range(1, spec.horizon + 1):
        result = world.step(np.stack([p.act(result.obs[i], greedy) for i, p in enumerate(policies)]))
        frames.append(with_time_bar(world.render_rgb(0), t, spec.horizon))
    return frames


def write_gif(frames: list[np.ndarray], out: Path, frame_ms: int = 100) -> Path:
    """An endlessly looping animated GIF of the frames."""
    out.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(out, save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
    return out


def render_episode(run_dir: Path, out: Path, seed: int | None = None, greedy: bool = False) -> Path:
    """Play one episode of the trained run in `run_dir` (world seed: `seed`, else the run's) -> GIF `out`."""
    torch.set_num_threads(1)
    config = RunConfig.from_dict(load_toml(RunDir(run_dir).config))
    seed = config.seed if seed is None else seed
    world = make_world(config.env, config.agents, 1, seed)
    _, policies = load_policies(RunDir(run_dir), config, world.spec, seed)
    return write_gif(play_episode(world, policies, greedy), Path(out))

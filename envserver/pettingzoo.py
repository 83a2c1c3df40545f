"""Our worlds as standard PettingZoo ParallelEnvs: `parallel_env("predation", n_agents=2, seed=0)`.

One env is ONE copy (batch = 1) of the World. Agents are "agent_0".."agent_{N-1}" (agent i = world
agent i), actions Discrete(n_actions), observations Box of the world's obs_shape and dtype (float32,
or uint8 images). Every agent's episode ends at the world's fixed horizon T, after which `agents` is
empty: a termination for our four worlds (T is the end of their task), a truncation for a world whose
time limit is "truncate". `reset(seed=s)` rebuilds the world with seed s, so the
episode equals the native world's `make_world(name, N, 1, s).reset()`; `reset()` without a seed draws
the next episode from the world's own RNG. An agent missing from the actions dict plays the world's
default action. `max_cycles` reports T; assigning it changes nothing (the horizon is the world's).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from envserver.worlds import World, make_world
from envserver.worlds.base import StepResult
from protocol.run.config import PAPER_DEFAULTS

RENDER_MODES = ("ansi", "rgb_array")


class WorldParallelEnv(ParallelEnv):
    """A PettingZoo ParallelEnv over one copy of one of our worlds."""

    def __init__(self, name: str, n_agents: int, seed: int | None, render_mode: str | None) -> None:
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise ValueError(f"render_mode must be one of {list(RENDER_MODES)} or None, got {render_mode!r}")
        self.name, self.n_agents, self.render_mode = name, n_agents, render_mode
        self.world: World = self._build(seed)
        spec = self.world.spec
        self.metadata = {"name": f"ssmarl_{name}_v0", "render_modes": list(RENDER_MODES),
                         "is_parallelizable": True, "render_fps": 10}
        self.max_cycles = spec.horizon
        self.possible_agents = [f"agent_{i}" for i in range(spec.n_agents)]
        self.agents: list[str] = []
        low, high = (0, 255) if spec.obs_dtype == "uint8" else (-np.inf, np.inf)
        self._observation_spaces = {
            a: spaces.Box(low, high, shape=spec.obs_shape, dtype=np.dtype(spec.obs_dtype))
            for a in self.possible_agents
        }
        self._action_spaces = {a: spaces.Discrete(spec.n_actions) for a in self.possible_agents}

    def _build(self, seed: int | None) -> World:
        """A fresh batch-1 world; seed None takes fresh OS entropy (PettingZoo's meaning of no seed)."""
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        return make_world(self.name, self.n_agents, 1, seed)

    def observation_space(self, agent: str) -> spaces.Box:
        """The same Box object on every call (PettingZoo requires it)."""
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Discrete:
        """The same Discrete object on every call (PettingZoo requires it)."""
        return self._action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Start an episode; with a seed, in a world rebuilt from that seed. `options` is unused."""
        if seed is not None:
            self.world = self._build(seed)
        result = self.world.reset()
        self.agents = list(self.possible_agents)
        return self._observations(result), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """One world step with the live agents' actions; all agents end together at the horizon, terminated
        or truncated as the world's time limit says."""
        default = self.world.spec.default_action
        joint = np.array([[int(actions.get(a, default))] for a in self.possible_agents], dtype=np.int64)
        result = self.world.step(joint)
        live = self.agents
        obs = self._observations(result)
        rewards = {a: float(result.rewards[i, 0]) for i, a in enumerate(live)}
        terminations = {a: bool(result.terminated[i, 0]) for i, a in enumerate(live)}
        truncations = {a: bool(result.truncated[i, 0]) for i, a in enumerate(live)}
        infos = {a: {} for a in live}
        if result.done:
            self.agents = []
        return obs, rewards, terminations, truncations, infos

    def _observations(self, result: StepResult) -> dict[str, np.ndarray]:
        return {a: result.obs[i, 0].copy() for i, a in enumerate(self.agents)}

    def render(self) -> str | np.ndarray | None:
        """The world's text picture ("ansi") or an RGB frame ("rgb_array") of the current state."""
        if self.render_mode is None:
            gymnasium.logger.warn("render() without a render_mode; pass render_mode='ansi' or 'rgb_array'")
            return None
        if self.render_mode == "ansi":
            return self.world.render_text(0)
        return self.world.render_rgb(0)


def parallel_env(name: str, n_agents: int | None = None, seed: int | None = None,
                 render_mode: str | None = None) -> WorldParallelEnv:
    """ParallelEnv over one copy of world `name` (predation, navigation, cleanup, harvest).

    n_agents defaults to the paper's number for that world; seed None draws one from OS entropy.
    """
    if name not in PAPER_DEFAULTS:
        raise ValueError(f"unknown env {name!r}; choose one of {sorted(PAPER_DEFAULTS)}")
    n = PAPER_DEFAULTS[name].agents if n_agents is None else n_agents
    return WorldParallelEnv(name, n, seed, render_mode)

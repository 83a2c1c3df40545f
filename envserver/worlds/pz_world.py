"""Any PettingZoo ParallelEnv as a World: B env instances, one per copy, stepped in lockstep.

Env names: "module:factory" or "module:factory?key=value&key=value". `factory(**kwargs)` is called once
per copy; values are read as int, float, true/false, else kept as strings. Two keys are ours and are
not passed on: `horizon`, the episode length T (without it, T is the env's `max_cycles`: the factory
kwarg if given, else the unwrapped env's attribute; an env with neither needs `horizon=`), and
`time_limit`, what T is: `truncate` (the default, as PettingZoo's own max_cycles is a truncation: the
critic bootstraps at T) or `end` (T is the end of the task: no bootstrap). Examples:
    mpe2.simple_spread_v3:parallel_env?N=3&max_cycles=25
    envserver.pettingzoo:parallel_env?name=predation&n_agents=2

The env must have a fixed agent set (`possible_agents`, world agent i = possible_agents[i]), the same
Discrete action space size and the same Box observation space for every agent. uint8 observations of
rank 3 (images) are kept as they are; all others are flattened to float32. Neighbours: the complete
graph, static.

Episodes: each reset draws one seed per copy from the world's RNG (`self.seeds`) and calls
env.reset(seed=...), so the same world seed gives the same episodes. The batch stays dense [T, B]:
a copy whose episode ends before T (its `agents` list empties), or an agent that leaves it early,
keeps its last observation and gets zero rewards until T. The env's own terminations and truncations
are passed on per agent and copy (the learners bootstrap only after a truncation, and mask out the
padded steps after either).
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
from gymnasium import spaces

from envserver.worlds._common import EpisodeClock, RngOnlyState, check_actions
from envserver.worlds.base import StepResult, World, WorldSpec, complete_graph, full_masks

HORIZON_KEY = "horizon"
TIME_LIMIT_KEY = "time_limit"


def parse_value(text: str) -> Any:
    """A kwarg value from an env name: int, float, true/false, else the string itself."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_env_name(name: str) -> tuple[str, str, dict[str, Any]]:
    """'module:factory?k=v&...' -> (module, factory, kwargs)."""
    target, _, query = name.partition("?")
    module, sep, factory = target.partition(":")
    if not (module and sep and factory):
        raise ValueError(f"env name {name!r} is not 'module:factory[?key=value&...]'")
    return module, factory, {k: parse_value(v) for k, v in parse_qsl(query, strict_parsing=bool(query))}


class PettingZooWorld(RngOnlyState, World):
    """B copies of an external PettingZoo ParallelEnv named 'module:factory[?key=value&...]'."""

    def __init__(self, name: str, n_agents: int, batch: int, seed: int) -> None:
        module, factory, kwargs = parse_env_name(name)
        horizon = kwargs.pop(HORIZON_KEY, None)
        time_limit = kwargs.pop(TIME_LIMIT_KEY, "truncate")
        make = getattr(importlib.import_module(module), factory)
        self.envs = [make(**kwargs) for _ in range(batch)]
        env = self.envs[0]
        self.agents: list[str] = list(env.possible_agents)
        if len(self.agents) != n_agents:
            raise ValueError(f"{name}: the env has {len(self.agents)} agents, not {n_agents}")
        if horizon is None:
            horizon = kwargs.get("max_cycles", getattr(env.unwrapped, "max_cycles", None))
        if not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"{name}: no usable episode length (got {horizon!r}); add '{HORIZON_KEY}=T'")
        n_actions, self.action_start = _action_space(env, self.agents)
        obs_shape, obs_dtype = _observation_space(env, self.agents)
        self.spec = WorldSpec(
            name=name,
            n_agents=n_agents,
            batch=batch,
            obs_shape=obs_shape,
            obs_dtype=obs_dtype,
            n_actions=n_actions,
            horizon=horizon,
            default_action=0,
            candidates=complete_graph(n_agents),
            dynamic_neighbors=False,
            time_limit=time_limit,
        )
        self.rng = np.random.default_rng(seed)
        self.clock = EpisodeClock(horizon)
        self.seeds = np.zeros(batch, dtype=np.int64)  # env.reset seed of every copy this episode
        self.obs = np.zeros((n_agents, batch, *obs_shape), dtype=obs_dtype)  # last observation seen

    def reset(self) -> StepResult:
        """Reset every copy with its own seed drawn from the world's RNG."""
        self.seeds = self.rng.integers(0, 2**31 - 1, size=self.spec.batch)
        for b, env in enumerate(self.envs):
            obs, _ = env.reset(seed=int(self.seeds[b]))
            self._store(b, obs)
        self.clock.start()
        rewards = np.zeros((self.spec.n_agents, self.spec.batch), dtype=np.float32)
        return StepResult.at_clock(self.spec, self.obs.copy(), rewards, False, full_masks(self.spec))

    def step(self, actions: np.ndarray) -> StepResult:
        """Step every copy that is still running; finished copies and agents get 0 and keep their obs.
        Each live agent's end is the env's (terminated or truncated), or at T the world's time limit."""
        a = check_actions(actions, self.spec)
        done = self.clock.tick()
        shape = (self.spec.n_agents, self.spec.batch)
        rewards = np.zeros(shape, dtype=np.float32)
        terminated, truncated = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
        for b, env in enumerate(self.envs):
            if not env.agents:
                continue  # this copy's episode already ended
            live = set(env.agents)
            joint = {agent: int(a[i, b]) + self.action_start
                     for i, agent in enumerate(self.agents) if agent in live}
            obs, rew, term, trunc, _ = env.step(joint)
            self._store(b, obs)
            for i, agent in enumerate(self.agents):
                if agent not in live:
                    continue  # a padded step: it ended earlier
                rewards[i, b] = rew.get(agent, 0.0)
                terminated[i, b] = bool(term.get(agent, False))
                truncated[i, b] = bool(trunc.get(agent, False)) and not terminated[i, b]
                if done and not (terminated[i, b] or truncated[i, b]):
                    (terminated if self.spec.time_limit == "end" else truncated)[i, b] = True
        return StepResult(self.obs.copy(), rewards, done, full_masks(self.spec), terminated, truncated)

    def _store(self, b: int, obs: dict[str, Any]) -> None:
        """Keep copy b's new observations; agents without one keep their last."""
        for i, agent in enumerate(self.agents):
            if agent in obs:
                self.obs[i, b] = np.asarray(obs[agent]).reshape(self.spec.obs_shape)

    def metric_columns(self) -> tuple[str, ...]:
        """No env-specific metrics (only the common return columns)."""
        return ()

    def episode_metrics(self) -> dict[str, float]:
        """Nothing beyond the common columns."""
        return {}

    def render_text(self, b: int = 0) -> str:
        """The env's own text if it renders 'ansi', else a one-line status of copy b."""
        env = self.envs[b]
        if getattr(env, "render_mode", None) == "ansi":
            return str(env.render())
        return f"{self.spec.name} copy {b}: t={self.clock.t}, live agents {list(env.agents)}"

    def render_rgb(self, b: int = 0) -> np.ndarray:
        """The env's RGB frame of copy b; needs render_mode=rgb_array in the env name."""
        env = self.envs[b]
        if getattr(env, "render_mode", None) != "rgb_array":
            raise ValueError(f"{self.spec.name}: add render_mode=rgb_array to the env name to render frames")
        return np.asarray(env.render(), dtype=np.uint8)


def _action_space(env: Any, agents: list[str]) -> tuple[int, int]:
    """(n, start) of the Discrete action space every agent shares."""
    found = {(int(s.n), int(s.start)) if isinstance(s, spaces.Discrete) else None
             for s in map(env.action_space, agents)}
    if len(found) != 1 or None in found:
        raise ValueError(f"every agent needs the same Discrete action space, got {sorted(map(str, found))}")
    return found.pop()


def _observation_space(env: Any, agents: list[str]) -> tuple[tuple[int, ...], str]:
    """(obs_shape, obs_dtype) of the Box observation space every agent shares, as the World serves it."""
    found = {(tuple(s.shape), np.dtype(s.dtype).name) if isinstance(s, spaces.Box) else None
             for s in map(env.observation_space, agents)}
    if len(found) != 1 or None in found:
        raise ValueError(f"every agent needs the same Box observation space, got {sorted(map(str, found))}")
    shape, dtype = found.pop()
    if dtype == "uint8" and len(shape) == 3:
        return shape, "uint8"  # images, scaled by 1/255 by the agents
    return (int(np.prod(shape)),), "float32"

"""PettingZoo both ways: our worlds as ParallelEnvs (API and seed tests), and ParallelEnvs as Worlds."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.test import parallel_api_test, parallel_seed_test

from coordinator.sim import Simulation
from envserver.pettingzoo import parallel_env
from envserver.worlds import make_world
from envserver.worlds.pz_world import parse_env_name
from protocol.run.config import RunConfig

WORLDS = ("predation", "navigation", "cleanup", "harvest")
PREDATION_PZ = "envserver.pettingzoo:parallel_env?name=predation&n_agents=3"


# ---- our worlds as ParallelEnvs ------------------------------------------------------------------

@pytest.mark.parametrize("name", WORLDS)
def test_passes_pettingzoo_api_and_seed_tests(name: str) -> None:
    parallel_api_test(parallel_env(name, seed=0), num_cycles=1000)
    parallel_seed_test(functools.partial(parallel_env, name))


@pytest.mark.parametrize(("name", "shape", "dtype", "n"), [
    ("predation", (2,), np.float32, 2),
    ("navigation", (6,), np.float32, 5),
    ("cleanup", (15, 15, 3), np.uint8, 8),
    ("harvest", (15, 15, 3), np.uint8, 7),
])
def test_spaces_follow_the_world_spec(name: str, shape: tuple, dtype: type, n: int) -> None:
    env = parallel_env(name, n_agents=2, seed=0)
    assert env.possible_agents == ["agent_0", "agent_1"]
    obs_space, act_space = env.observation_space("agent_1"), env.action_space("agent_1")
    assert isinstance(obs_space, spaces.Box) and obs_space.shape == shape and obs_space.dtype == dtype
    assert isinstance(act_space, spaces.Discrete) and act_space.n == n
    obs, _ = env.reset(seed=3)
    assert all(obs_space.contains(o) for o in obs.values())


def test_episode_equals_the_native_world_and_ends_at_the_horizon() -> None:
    """Predation's T is the end of its task: every agent terminates there (nothing is truncated)."""
    env = parallel_env("predation", n_agents=3)
    native = make_world("predation", 3, 1, 11)
    obs, infos = env.reset(seed=11)
    expected = native.reset()
    rng = np.random.default_rng(0)
    for t in range(1, native.spec.horizon + 1):
        np.testing.assert_array_equal(np.stack([obs[a] for a in env.possible_agents]), expected.obs[:, 0])
        joint = rng.integers(0, 2, size=(3, 1))
        obs, rewards, terms, truncs, infos = env.step({f"agent_{i}": joint[i, 0] for i in range(3)})
        expected = native.step(joint)
        assert [rewards[a] for a in env.possible_agents] == expected.rewards[:, 0].tolist()
        assert not any(truncs.values())
        assert all(terms[a] == (t == native.spec.horizon) for a in env.possible_agents)
    assert env.agents == []
    with pytest.raises(RuntimeError):
        env.step({})


def test_missing_action_plays_the_default_action() -> None:
    env = parallel_env("navigation", n_agents=2, seed=0)
    obs, _ = env.reset(seed=5)
    stay = {a: env.world.spec.default_action for a in env.possible_agents}
    explicit = env.step(stay)
    env.reset(seed=5)
    implicit = env.step({"agent_0": stay["agent_0"]})
    assert all(np.array_equal(explicit[0][a], implicit[0][a]) for a in env.possible_agents)
    assert explicit[1] == implicit[1]


def test_reset_without_seed_draws_a_new_episode_from_the_world_rng() -> None:
    env = parallel_env("predation", n_agents=2)
    first, _ = env.reset(seed=1)
    second, _ = env.reset()
    again, _ = env.reset(seed=1)
    assert not np.array_equal(first["agent_0"], second["agent_0"])
    np.testing.assert_array_equal(first["agent_0"], again["agent_0"])


def test_render_modes() -> None:
    text_env = parallel_env("predation", n_agents=2, seed=0, render_mode="ansi")
    text_env.reset(seed=2)
    assert text_env.render() == text_env.world.render_text(0)
    rgb_env = parallel_env("harvest", n_agents=2, seed=0, render_mode="rgb_array")
    rgb_env.reset(seed=2)
    np.testing.assert_array_equal(rgb_env.render(), rgb_env.world.render_rgb(0))
    with pytest.raises(ValueError):
        parallel_env("predation", render_mode="human")
    with pytest.raises(ValueError):
        parallel_env("chess")


# ---- ParallelEnvs as Worlds ----------------------------------------------------------------------

def test_parse_env_name() -> None:
    assert parse_env_name("m.sub:make") == ("m.sub", "make", {})
    assert parse_env_name("m:f?N=3&scale=0.5&flag=true&name=x") == (
        "m", "f", {"N": 3, "scale": 0.5, "flag": True, "name": "x"})
    for bad in ("m:", ":f", "m:f?N"):
        with pytest.raises(ValueError):
            parse_env_name(bad)


def test_round_trip_matches_the_native_world() -> None:
    """predation World -> ParallelEnv -> PettingZooWorld gives the native numbers, copy by copy."""
    world = make_world(PREDATION_PZ, n_agents=3, batch=4, seed=7)
    spec = world.spec
    assert (spec.n_agents, spec.batch, spec.obs_shape, spec.obs_dtype) == (3, 4, (3,), "float32")
    assert (spec.n_actions, spec.horizon, spec.dynamic_neighbors) == (2, 30, False)
    assert spec.candidates == ((1, 2), (0, 2), (0, 1)) and world.metric_columns() == ()
    result = world.reset()
    natives = [make_world("predation", 3, 1, int(s)) for s in world.seeds]
    expected = [n.reset() for n in natives]
    assert len(set(world.seeds.tolist())) == 4
    rng = np.random.default_rng(1)
    for t in range(spec.horizon):
        for b in range(spec.batch):
            np.testing.assert_array_equal(result.obs[:, b], expected[b].obs[:, 0])
            np.testing.assert_array_equal(result.rewards[:, b], expected[b].rewards[:, 0])
        actions = rng.integers(0, 2, size=(3, 4))
        result = world.step(actions)
        expected = [n.step(actions[:, b : b + 1]) for b, n in enumerate(natives)]
        assert result.done == (t + 1 == spec.horizon)
        # the wrapped predation ends its task at T: the adapter passes the termination on
        assert (result.terminated == result.done).all() and not result.truncated.any()
        assert all(m.all() for m in result.masks)


def test_same_seed_same_episodes_and_state_resumes() -> None:
    a, b = (make_world(PREDATION_PZ, 3, 2, seed=5) for _ in range(2))
    np.testing.assert_array_equal(a.reset().obs, b.reset().obs)
    state = a.get_state()
    next_a = a.reset().obs
    b.set_state(state)
    np.testing.assert_array_equal(b.reset().obs, next_a)
    other = make_world(PREDATION_PZ, 3, 2, seed=6)
    assert not np.array_equal(other.reset().obs, make_world(PREDATION_PZ, 3, 2, seed=5).reset().obs)


def test_images_are_kept_as_uint8() -> None:
    world = make_world("envserver.pettingzoo:parallel_env?name=harvest&n_agents=2", 2, 2, seed=0)
    assert (world.spec.obs_shape, world.spec.obs_dtype, world.spec.n_actions) == ((15, 15, 3), "uint8", 7)
    result = world.reset()
    assert result.obs.dtype == np.uint8 and result.obs.shape == (2, 2, 15, 15, 3)


def test_copy_ending_before_the_horizon_is_padded() -> None:
    """horizon=35 > predation's 30: steps 31..35 pay 0 and repeat the last observation."""
    world = make_world(PREDATION_PZ + "&horizon=35", 3, 2, seed=0)
    assert world.spec.horizon == 35
    world.reset()
    actions = np.zeros((3, 2), dtype=np.int64)
    for _ in range(30):
        last = world.step(actions)
    assert not last.done and last.terminated.all()  # predation's own end, at its t = 30
    for t in range(31, 36):
        result = world.step(actions)
        np.testing.assert_array_equal(result.obs, last.obs)
        assert not result.rewards.any()
        assert result.done == (t == 35)
        assert not (result.terminated.any() or result.truncated.any())  # padded steps end nothing


class Countdown(ParallelEnv):
    """Test env without max_cycles: agent_k leaves after k + 1 steps; reward 1 per step, obs = [t]."""

    metadata = {"name": "countdown"}

    def __init__(self, n: int = 3) -> None:
        self.possible_agents = [f"agent_{k}" for k in range(n)]
        self._obs = spaces.Box(0, 100, shape=(1,), dtype=np.float32)
        self._act = spaces.Discrete(2, start=1)

    def observation_space(self, agent: str) -> spaces.Box:
        return self._obs

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._act

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self.t, self.agents = 0, list(self.possible_agents)
        return {a: np.zeros(1, np.float32) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: dict) -> tuple[dict, dict, dict, dict, dict]:
        assert set(actions) == set(self.agents) and all(v in (1, 2) for v in actions.values())
        self.t += 1
        live = self.agents
        done = {a: self.t >= int(a.split("_")[1]) + 1 for a in live}
        self.agents = [a for a in live if not done[a]]
        obs = {a: np.full(1, self.t, np.float32) for a in live}
        return obs, {a: 1.0 for a in live}, done, {a: False for a in live}, {a: {} for a in live}


def test_agents_leaving_early_get_zero_rewards_and_keep_their_last_obs() -> None:
    world = make_world("tests.test_pettingzoo:Countdown?horizon=5", 3, 2, seed=0)
    assert (world.spec.n_actions, world.spec.obs_shape) == (2, (1,))
    world.reset()
    rewards, obs, ends = [], [], []
    for _ in range(5):
        result = world.step(np.ones((3, 2), dtype=np.int64))  # world action 1 = env action 2
        rewards.append(result.rewards[:, 0])
        obs.append(result.obs[:, 0, 0])
        ends.append(result.terminated[:, 0])
        assert not result.truncated.any()
    assert result.done
    # agent_k terminates with step k + 1, once
    np.testing.assert_array_equal(np.stack(ends).T, [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0]])
    np.testing.assert_array_equal(np.stack(rewards).T, [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    np.testing.assert_array_equal(np.stack(obs).T, [[1, 1, 1, 1, 1], [1, 2, 2, 2, 2], [1, 2, 3, 3, 3]])


def test_bad_envs_are_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="horizon"):
        make_world("tests.test_pettingzoo:Countdown", 3, 1, seed=0)
    with pytest.raises(ValueError, match="3 agents"):
        make_world("tests.test_pettingzoo:Countdown?horizon=5", 2, 1, seed=0)


def test_simulation_trains_on_an_adapted_env(tmp_path: Path) -> None:
    """The in-process driver runs a 'module:factory?...' env end to end (RunConfig.validate not called)."""
    config = dataclasses.replace(RunConfig(), env=PREDATION_PZ, agents=3, episodes=4, batch=2,
                                 hidden=(16,), iterations=1)
    Simulation(config, tmp_path).run(progress=False)
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("episode,collective_return") and len(lines) == 3
    assert (tmp_path / "agents" / "2" / "checkpoint.pt").exists()


@pytest.mark.parametrize("time_limit, flag", [("", "truncated"), ("&time_limit=truncate", "truncated"),
                                              ("&time_limit=end", "terminated")])
def test_agents_alive_at_the_horizon_end_as_the_time_limit_says(time_limit: str, flag: str) -> None:
    """horizon=2 cuts Countdown: agent_0 terminated at step 1, agent_1 by itself at step 2, agent_2 by T."""
    world = make_world("tests.test_pettingzoo:Countdown?horizon=2" + time_limit, 3, 1, seed=0)
    world.reset()
    world.step(np.ones((3, 1), dtype=np.int64))
    last = world.step(np.ones((3, 1), dtype=np.int64))
    assert last.done
    np.testing.assert_array_equal(last.terminated[:, 0], [False, True, flag == "terminated"])
    np.testing.assert_array_equal(last.truncated[:, 0], [False, False, flag == "truncated"])

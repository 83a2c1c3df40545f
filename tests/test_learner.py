"""The SSLearner: deterministic seeding, IPPO mode, communication gaps, resume."""

import dataclasses
import io
import math

import numpy as np
import pytest
import torch

from tests.routing import route_in_memory
from protocol.wire.messages import Kind
from agent.algorithms.ss import SSLearner
from agent.nets import obs_tensor
from envserver.worlds.base import WorldSpec
from protocol.run.config import RunConfig

torch.set_num_threads(1)

T, B = 4, 2
SPEC = WorldSpec(name="toy", n_agents=3, batch=B, obs_shape=(3,), obs_dtype="float32",
                 n_actions=3, horizon=T, default_action=0,
                 candidates=((1,), (0, 2), (1,)), dynamic_neighbors=True)
CONFIG = RunConfig(env="predation", agents=3, batch=B, seed=7, hidden=(8,), iterations=2,
                   rho=5.0, actor_lr=1e-2, critic_lr=1e-2)


def make(config: RunConfig = CONFIG, ids=range(3)) -> dict[int, SSLearner]:
    return {i: SSLearner(i, SPEC, SPEC.candidates[i], config) for i in ids}


def rollout(learners: dict[int, SSLearner], data: np.random.Generator) -> np.ndarray:
    """One episode batch of random observations, masks and rewards; returns actions [T, N, B]."""
    taken = []
    for t in range(T):
        step = {}
        for i, learner in learners.items():
            obs = data.standard_normal((B, *SPEC.obs_shape)).astype(np.float32)
            mask = data.random((B, len(SPEC.candidates[i]))) < 0.7
            step[i] = learner.act(obs, mask)
        taken.append([step[i] for i in learners])
        for learner in learners.values():
            rewards = data.standard_normal(B).astype(np.float32)
            learner.record(rewards, t == T - 1, False, data.standard_normal((B, 3)).astype(np.float32))
    return np.array(taken)


def update(learners: dict[int, SSLearner], drop=lambda k, i, j: False) -> dict[int, dict[str, float]]:
    """K rounds over the in-memory exchange; `drop(k, i, j)` loses j's round-k message to i."""
    cands = {i: l.candidates for i, l in learners.items()}
    for learner in learners.values():
        learner.begin_update()
    for k in range(CONFIG.iterations):
        inboxes = route_in_memory({i: l.outgoing(k) for i, l in learners.items()}, cands)
        for i, learner in learners.items():
            learner.update_step(k, {j: m for j, m in inboxes[i].items() if not drop(k, i, j)})
    return {i: l.end_update() for i, l in learners.items()}


def train(learners: dict[int, SSLearner], updates: int, data: np.random.Generator,
          drop=lambda k, i, j: False) -> list[dict[int, dict[str, float]]]:
    """`updates` rollouts, each followed by an update."""
    history = []
    for _ in range(updates):
        rollout(learners, data)
        history.append(update(learners, drop))
    return history


def test_same_seed_same_parameters_whatever_else_was_built_first():
    first = make()
    initial = first[1].flat_parameters().copy()
    train(first, 3, np.random.default_rng(0))

    torch.manual_seed(123)
    torch.rand(100)  # disturb the global torch RNG ...
    SSLearner(5, SPEC, (), dataclasses.replace(CONFIG, seed=99))  # ... and build another agent first
    second = make(ids=(2, 1, 0))  # and in another order
    train({i: second[i] for i in range(3)}, 3, np.random.default_rng(0))

    assert not np.array_equal(first[1].flat_parameters(), initial)
    for i in range(3):
        np.testing.assert_array_equal(first[i].flat_parameters(), second[i].flat_parameters())
    other_seed = make(dataclasses.replace(CONFIG, seed=8), ids=(1,))[1]
    assert not np.array_equal(other_seed.flat_parameters(), initial)


def test_update_statistics():
    learners = make()
    stats = train(learners, 1, np.random.default_rng(1))[0]
    for i, s in stats.items():
        assert set(s) == {"policy_loss", "value_loss", "penalty", "kappa", "entropy",
                          "suggestion_mse", "mean_reward", "comm_gaps", "active_neighbors"}
        assert all(math.isfinite(v) for v in s.values()), s
        assert s["comm_gaps"] == 0
        assert s["kappa"] > 0 and s["penalty"] >= 0
        assert 0 < s["active_neighbors"] <= len(SPEC.candidates[i])
        assert 0 < s["entropy"] <= math.log(SPEC.n_actions) + 1e-6


def test_ippo_has_no_suggestion_nets_and_sends_no_suggestions():
    ippo_cfg = dataclasses.replace(CONFIG, algo="ippo")
    ippo, ss = SSLearner(1, SPEC, (0, 2), ippo_cfg), SSLearner(1, SPEC, (0, 2), CONFIG)
    assert ippo.candidates == () and len(ippo.suggesters) == 0
    n_own = sum(p.numel() for net in (ippo.policy, ippo.critic) for p in net.parameters())
    assert ippo.flat_parameters().size == n_own < ss.flat_parameters().size
    # pi_ii and V_i start identical for the same seed, so IPPO and SS compare like for like
    np.testing.assert_array_equal(ippo.flat_parameters(), ss.flat_parameters()[:n_own])

    stats = train({1: ippo}, 1, np.random.default_rng(2))[0][1]
    assert math.isnan(stats["suggestion_mse"]) and stats["active_neighbors"] == 0
    rollout({1: ippo}, np.random.default_rng(3))
    ippo.begin_update()
    out = ippo.outgoing(0)
    assert out.broadcast == {} and out.addressed == {}  # IPPO shares nothing at all
    assert ippo.subscriptions().all == frozenset()
    ss_round = ss.subscriptions()
    assert ss_round.broadcast == {Kind.DIST} and ss_round.addressed == {Kind.SUGG}


def test_a_round_without_neighbours_is_exactly_an_ippo_step():
    ss = make()
    ippo = make(dataclasses.replace(CONFIG, algo="ippo"))
    # every message to agent 1 is lost: its rounds are gaps, counted, and its step is plain PPO
    stats = train(ss, 1, np.random.default_rng(4), drop=lambda k, i, j: i == 1)[0]
    train(ippo, 1, np.random.default_rng(4))
    assert stats[1]["comm_gaps"] == CONFIG.iterations * 2 and stats[0]["comm_gaps"] == 0
    assert math.isnan(stats[1]["suggestion_mse"])
    n_own = ippo[1].flat_parameters().size
    np.testing.assert_array_equal(ss[1].flat_parameters()[:n_own], ippo[1].flat_parameters())


def test_neighbour_without_round_zero_actions_is_a_gap_in_every_round():
    learners = make()
    stats = train(learners, 1, np.random.default_rng(5),
                  drop=lambda k, i, j: (k, i, j) == (0, 0, 1))[0]
    assert stats[0]["comm_gaps"] == CONFIG.iterations  # 0 never got 1's actions this update


def test_received_arrays_are_checked_and_may_be_read_only():
    learners = make(ids=(0,))
    rollout(learners, np.random.default_rng(6))
    learner = learners[0]
    learner.begin_update()
    R, A = T * B, SPEC.n_actions

    def frozen(x):
        x = np.ascontiguousarray(x)
        return np.frombuffer(x.tobytes(), dtype=x.dtype).reshape(x.shape)

    good = {
        Kind.DIST: {"probs": frozen(np.full((R, A), 1 / A, np.float32)),
                    "actions": frozen(np.zeros(R, np.int64)),
                    "behaviour": frozen(np.full(R, 1 / A, np.float32))},
        Kind.SUGG: {"to": 0, "probs": frozen(np.full((R, A), 1 / A, np.float32))},
    }
    learner.update_step(0, {1: good})
    bad = {**good, Kind.DIST: {"probs": np.full((R - 1, A), 1 / A, np.float32)}}
    with pytest.raises(ValueError, match="P_jj"):
        learner.update_step(1, {1: bad})


def test_state_dict_round_trip_continues_bit_identically():
    original = make()
    train(original, 2, np.random.default_rng(7))
    saved = io.BytesIO()
    torch.save({i: l.state_dict() for i, l in original.items()}, saved)
    saved.seek(0)
    states = torch.load(saved)
    resumed = make()
    for i, learner in resumed.items():
        learner.load_state_dict(states[i])
        assert learner.updates == 2

    actions_a = rollout(original, np.random.default_rng(8))
    actions_b = rollout(resumed, np.random.default_rng(8))
    np.testing.assert_array_equal(actions_a, actions_b)
    assert update(original) == update(resumed)
    train(original, 1, np.random.default_rng(9))
    train(resumed, 1, np.random.default_rng(9))
    for i in range(3):
        np.testing.assert_array_equal(original[i].flat_parameters(), resumed[i].flat_parameters())


def test_uint8_observations_are_scaled():
    obs = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    np.testing.assert_allclose(obs_tensor(obs).numpy(), [[0.0, 1.0, 0.2, 0.4]], rtol=0, atol=1e-7)
    assert obs_tensor(np.ones((2, 3), np.float32)).shape == (2, 3)

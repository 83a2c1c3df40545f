"""Cooperative Predation: dilemma rewards, movement, observations, neighbour masks, metrics, determinism."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from envserver.worlds import make_world
from envserver.worlds.predation import ALL_COOPERATE, ALL_DEFECT, MIXED, PredationWorld

LEFT, RIGHT = 0, 1


def started(n: int, batch: int, seed: int = 0) -> PredationWorld:
    w = PredationWorld(n_agents=n, batch=batch, seed=seed)
    w.reset()
    return w


def toward(w: PredationWorld) -> np.ndarray:
    """The approaching action of every agent, written independently of the world: right iff x <= prey."""
    return np.array([[RIGHT if x <= p else LEFT for x, p in zip(row, w.prey)] for row in w.positions])


def test_two_agent_reward_table() -> None:
    # prey at 10, agent 0 left of it (toward = right), agent 1 right of it (toward = left)
    w = started(2, 4)
    w.place(positions=[[5.0] * 4, [15.0] * 4], prey=[10.0] * 4)
    # copies: C-C, C-D, D-C, D-D
    actions = np.array([[RIGHT, RIGHT, LEFT, LEFT], [LEFT, RIGHT, LEFT, RIGHT]])
    r = w.step(actions).rewards
    assert r.dtype == np.float32
    # all cooperate -1; mixed: cooperator -2N = -4, defector 0; all defect -2N + 1 = -3
    np.testing.assert_array_equal(r, [[-1, -4, 0, -3], [-1, 0, -4, -3]])
    np.testing.assert_array_equal(w.categories[0], [ALL_COOPERATE, MIXED, MIXED, ALL_DEFECT])


def test_three_agent_reward_table() -> None:
    w = started(3, 3)
    w.place(positions=[[1.0] * 3, [2.0] * 3, [29.0] * 3], prey=[20.0] * 3)  # toward: R, R, L
    actions = np.array([[RIGHT, LEFT, RIGHT], [RIGHT, LEFT, LEFT], [LEFT, RIGHT, RIGHT]])
    r = w.step(actions).rewards
    # copy 0: all cooperate -> -1; copy 1: all defect -> -2*3 + 1 = -5;
    # copy 2: agent 0 cooperates (-2N = -6), agents 1 and 2 defect (0)
    np.testing.assert_array_equal(r, [[-1, -5, -6], [-1, -5, 0], [-1, -5, 0]])


def test_agent_on_prey_counts_right_as_toward() -> None:
    w = started(2, 2)
    w.place(positions=[[7.0, 7.0], [3.0, 3.0]], prey=[7.0, 7.0])  # agent 0 exactly on the prey
    r = w.step(np.array([[RIGHT, LEFT], [RIGHT, RIGHT]])).rewards
    np.testing.assert_array_equal(w.cooperated, [[True, False], [True, True]])
    np.testing.assert_array_equal(r, [[-1, 0], [-1, -4]])


def test_cooperation_is_judged_before_the_move() -> None:
    # agent 0 at 9.5 moves right past the prey at 10: still cooperation (it was left of the prey)
    w = started(2, 1)
    w.place(positions=[[9.5], [12.0]], prey=[10.0])
    r = w.step(np.array([[RIGHT], [LEFT]])).rewards
    np.testing.assert_array_equal(r, [[-1], [-1]])
    np.testing.assert_array_equal(w.positions, [[10.5], [11.0]])


def test_moves_are_clipped_to_the_line() -> None:
    w = started(2, 3)
    w.place(positions=[[0.0, 0.5, 29.5], [30.0, 12.25, 30.0]], prey=[15.0] * 3)
    w.step(np.array([[LEFT, LEFT, RIGHT], [RIGHT, RIGHT, LEFT]]))
    np.testing.assert_array_equal(w.positions, [[0.0, 0.0, 30.0], [30.0, 13.25, 29.0]])


def test_observation_is_shared_offset_to_prey_over_30() -> None:
    w = started(2, 2)
    res = w.place(positions=[[3.0, 30.0], [27.0, 0.0]], prey=[12.0, 15.0])
    assert res.obs.shape == (2, 2, 2) and res.obs.dtype == np.float32
    expected = np.array([[-9 / 30, 15 / 30], [15 / 30, -15 / 30]], dtype=np.float32)  # [B, N]
    np.testing.assert_array_equal(res.obs[0], expected)
    np.testing.assert_array_equal(res.obs[1], expected)
    # after a step the observation describes the new positions: 3 -> 4, 27 -> 26
    obs = w.step(np.array([[RIGHT, LEFT], [LEFT, RIGHT]])).obs
    np.testing.assert_array_equal(obs[0, 0], np.array([-8 / 30, 14 / 30], dtype=np.float32))


def test_masks_use_normalised_distance_inclusive_at_three() -> None:
    w = started(3, 1)
    assert w.spec.candidates == ((1, 2), (0, 2), (0, 1)) and w.spec.dynamic_neighbors
    masks = w.place(positions=[[10.0], [13.0], [16.5]], prey=[0.0]).masks
    # |10-13| / 30 = 0.1 (inclusive) -> neighbours; |13-16.5| = 3.5 and |10-16.5| = 6.5 -> not
    np.testing.assert_array_equal(masks[0], [[True, False]])
    np.testing.assert_array_equal(masks[1], [[True, False]])
    np.testing.assert_array_equal(masks[2], [[False, False]])
    # masks describe the positions after the move: 10 -> 9, 13 -> 14, 16.5 -> 15.5
    masks = w.step(np.array([[LEFT], [RIGHT], [LEFT]])).masks
    np.testing.assert_array_equal(masks[0], [[False, False]])
    np.testing.assert_array_equal(masks[1], [[False, True]])
    np.testing.assert_array_equal(masks[2], [[False, True]])


def test_masks_just_beyond_three_are_off() -> None:
    w = started(3, 2)
    masks = w.place(positions=[[0.0, 27.0], [3.01, 30.0], [20.0, 0.0]], prey=[5.0, 5.0]).masks
    np.testing.assert_array_equal(masks[0], [[False, False], [True, False]])
    np.testing.assert_array_equal(masks[1], [[False, False], [True, False]])


def test_two_agents_always_exchange() -> None:
    """N = 2 is the plain two-player dilemma: the pair is linked at every step, however far apart."""
    w = started(2, 2)
    assert not w.spec.dynamic_neighbors
    masks = w.place(positions=[[0.0, 27.0], [30.0, 30.0]], prey=[5.0, 5.0]).masks
    np.testing.assert_array_equal(masks[0], [[True], [True]])
    np.testing.assert_array_equal(masks[1], [[True], [True]])


def test_truncates_at_step_30_then_refuses_to_step() -> None:
    w = started(4, 2)
    flags = [w.step(np.zeros((4, 2), dtype=np.int64)).done for _ in range(30)]
    assert flags == [False] * 29 + [True]
    finished = w.positions.copy()
    with pytest.raises(RuntimeError):
        w.step(np.zeros((4, 2), dtype=np.int64))
    np.testing.assert_array_equal(w.positions, finished)  # the refused step moved nobody
    assert not w.reset().done


def test_reset_draws_uniform_starts_on_the_line() -> None:
    w = PredationWorld(n_agents=8, batch=500, seed=3)
    res = w.reset()
    assert res.obs.shape == (8, 500, 8) and res.rewards.shape == (8, 500)
    assert not res.rewards.any()
    assert 0.0 <= w.positions.min() and w.positions.max() <= 30.0
    assert 0.0 <= w.prey.min() and w.prey.max() <= 30.0
    assert abs(w.positions.mean() - 15.0) < 0.5  # 4000 uniform draws: std of the mean ~0.14
    assert len(w.spec.candidates[0]) == 7 and w.spec.default_action == 0


def rollout(w: PredationWorld, episodes: int, seed: int) -> list[np.ndarray]:
    """Play `episodes` episodes with a fixed random action script; returns every array the world produced."""
    script = np.random.default_rng(seed)
    n, b = w.spec.n_agents, w.spec.batch
    out: list[np.ndarray] = []
    for _ in range(episodes):
        res = w.reset()
        out += [res.obs, *res.masks]
        while not res.done:
            res = w.step(script.integers(0, 2, size=(n, b)))
            out += [res.obs, res.rewards, *res.masks]
    return out


def test_same_seed_is_bit_identical_and_seeds_differ() -> None:
    a = rollout(PredationWorld(3, 4, seed=11), episodes=2, seed=0)
    b = rollout(PredationWorld(3, 4, seed=11), episodes=2, seed=0)
    c = rollout(PredationWorld(3, 4, seed=12), episodes=2, seed=0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_state_round_trip_continues_identically() -> None:
    reference = PredationWorld(3, 4, seed=5)
    rollout(reference, episodes=1, seed=0)
    state = msgpack.unpackb(msgpack.packb(reference.get_state()))
    resumed = PredationWorld(3, 4, seed=999)
    resumed.set_state(state)
    expected = rollout(reference, episodes=2, seed=1)
    got = rollout(resumed, episodes=2, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(expected, got, strict=True))
    with pytest.raises(ValueError):
        make_world("navigation", 3, 4, 0).set_state(state)


def test_joint_action_rates_of_a_scripted_two_agent_batch() -> None:
    w = started(2, 2, seed=7)
    assert w.metric_columns() == ("cc_rate", "cd_rate", "dd_rate")
    for t in range(30):
        coop = toward(w)
        defect = 1 - coop
        # copy 0: both always cooperate; copy 1: agent 0 cooperates for 10 steps while agent 1 defects,
        # then both defect
        a = coop.copy()
        a[1, 1] = defect[1, 1]
        if t >= 10:
            a[0, 1] = defect[0, 1]
        w.step(a)
    np.testing.assert_array_equal(w.categories[:, 0], [ALL_COOPERATE] * 30)
    np.testing.assert_array_equal(w.categories[:, 1], [MIXED] * 10 + [ALL_DEFECT] * 20)
    m = w.episode_metrics()
    # 60 (step, copy) pairs: 30 C-C, 10 C-D, 20 D-D
    assert m == pytest.approx({"cc_rate": 30 / 60, "cd_rate": 10 / 60, "dd_rate": 20 / 60})
    w.reset()
    assert all(np.isnan(v) for v in w.episode_metrics().values())


def test_many_agents_report_only_cc_rate() -> None:
    w = started(8, 3, seed=1)
    assert w.metric_columns() == ("cc_rate",)
    w.step(toward(w))
    all_but_one = toward(w)
    all_but_one[0, 0] = 1 - all_but_one[0, 0]
    w.step(all_but_one)
    assert w.episode_metrics() == {"cc_rate": pytest.approx(5 / 6)}  # 5 of 2 x 3 (step, copy) pairs


def test_render_text_shows_prey_and_agents() -> None:
    w = started(3, 1)
    w.place(positions=[[0.0], [4.2], [3.8]], prey=[30.0])
    assert w.render_text(0) == "0...+" + "." * 25 + "P"


def test_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError):
        PredationWorld(1, 2, 0)
    with pytest.raises(RuntimeError):
        PredationWorld(2, 2, 0).step(np.zeros((2, 2), dtype=np.int64))  # before reset
    w = started(2, 2)
    with pytest.raises(ValueError):
        w.step(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError):
        w.step(np.full((2, 2), 2))

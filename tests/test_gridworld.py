"""The shared grid engine: moves, turns, walls, conflicts, views, eating, API facts, determinism, state."""

from __future__ import annotations

import json

import msgpack
import numpy as np
import pytest

from envserver.worlds import make_world
from envserver.worlds.base import complete_graph
from envserver.worlds.gridworld import (
    AGENT_COLOURS,
    APPLE,
    DOWN,
    LEFT,
    MOVE_DOWN,
    MOVE_LEFT,
    MOVE_RIGHT,
    MOVE_UP,
    RIGHT,
    STAY,
    TURN_CCW,
    TURN_CW,
    UP,
    WALL,
    GridMap,
    equality,
)
from envserver.worlds.harvest import HarvestWorld

OPEN = (  # 7x7 floor inside walls, no apples: nothing ever grows
    "@@@@@@@@@",
    "@PPP    @",
    "@       @",
    "@       @",
    "@       @",
    "@       @",
    "@       @",
    "@       @",
    "@@@@@@@@@",
)


def placed(rows, where, headings, batch=1, seed=0) -> HarvestWorld:
    """A reset world whose agents stand at `where` [(r, c), ...] facing `headings` in every copy."""
    w = HarvestWorld(n_agents=len(where), batch=batch, seed=seed, rows=rows)
    w.reset()
    w.pos[:] = np.array(where)
    w.ori[:] = np.array(headings)
    return w


def act(w, *per_agent: int) -> np.ndarray:
    """Joint actions [N, B]: agent i does per_agent[i] in every copy."""
    return np.repeat(np.array(per_agent, dtype=np.int64)[:, None], w.b, axis=1)


def test_parse_rejects_ragged_rows():
    with pytest.raises(ValueError):
        GridMap.parse(["@@@", "@@"])


def test_turns_clockwise_and_back():
    w = placed(OPEN, [(4, 4)], [UP])
    seen = []
    for _ in range(4):
        w.step(act(w, TURN_CW))
        seen.append(int(w.ori[0, 0]))
    assert seen == [RIGHT, DOWN, LEFT, UP]
    w.step(act(w, TURN_CCW))
    assert int(w.ori[0, 0]) == LEFT
    assert w.pos[0, 0].tolist() == [4, 4]  # turning never moves


# (heading, action) -> displacement (drow, dcol) on the map; written out by hand
RELATIVE = {
    (UP, MOVE_UP): (-1, 0), (UP, MOVE_DOWN): (1, 0), (UP, MOVE_LEFT): (0, -1), (UP, MOVE_RIGHT): (0, 1),
    (RIGHT, MOVE_UP): (0, 1), (RIGHT, MOVE_DOWN): (0, -1), (RIGHT, MOVE_LEFT): (-1, 0), (RIGHT, MOVE_RIGHT): (1, 0),
    (DOWN, MOVE_UP): (1, 0), (DOWN, MOVE_DOWN): (-1, 0), (DOWN, MOVE_LEFT): (0, 1), (DOWN, MOVE_RIGHT): (0, -1),
    (LEFT, MOVE_UP): (0, -1), (LEFT, MOVE_DOWN): (0, 1), (LEFT, MOVE_LEFT): (1, 0), (LEFT, MOVE_RIGHT): (-1, 0),
}  # fmt: skip


@pytest.mark.parametrize(("heading", "action"), sorted(RELATIVE))
def test_moves_are_relative_to_heading(heading, action):
    w = placed(OPEN, [(4, 4)], [heading])
    w.step(act(w, action))
    dr, dc = RELATIVE[heading, action]
    assert w.pos[0, 0].tolist() == [4 + dr, 4 + dc]
    assert int(w.ori[0, 0]) == heading


def test_walls_and_map_edge_block():
    w = placed(OPEN, [(1, 1)], [UP])
    w.step(act(w, MOVE_UP))  # wall above
    w.step(act(w, MOVE_LEFT))  # wall to the left
    assert w.pos[0, 0].tolist() == [1, 1]
    edge = placed(("PP ", "   "), [(0, 0)], [UP])  # no wall border: outside the map blocks too
    edge.step(act(edge, MOVE_UP))
    edge.step(act(edge, MOVE_LEFT))
    assert edge.pos[0, 0].tolist() == [0, 0]


def test_contested_cell_goes_to_one_random_winner():
    w = placed(OPEN, [(4, 3), (4, 5)], [RIGHT, LEFT], batch=400, seed=1)
    w.step(act(w, MOVE_UP, MOVE_UP))  # both want (4, 4)
    on_goal = (w.pos == np.array([4, 4])).all(axis=2)  # [B, N]
    assert (on_goal.sum(axis=1) == 1).all()
    stayed = (w.pos == np.array([[4, 3], [4, 5]])).all(axis=2)
    assert (on_goal ^ stayed).all()  # the loser did not move at all
    wins = int(on_goal[:, 0].sum())  # fair coin: 200 +- 4 sigma (sigma = 10)
    assert abs(wins - 200) <= 40


def test_swaps_are_blocked_and_chains_advance():
    swap = placed(OPEN, [(4, 3), (4, 4)], [RIGHT, LEFT], batch=20)
    swap.step(act(swap, MOVE_UP, MOVE_UP))
    assert (swap.pos == np.array([[4, 3], [4, 4]])).all()
    chain = placed(OPEN, [(4, 3), (4, 4), (4, 5)], [RIGHT, RIGHT, RIGHT], batch=20)
    chain.step(act(chain, MOVE_UP, MOVE_UP, MOVE_UP))  # a queue moving forward all advances
    assert (chain.pos == np.array([[4, 4], [4, 5], [4, 6]])).all()
    stuck = placed(OPEN, [(4, 5), (4, 6), (4, 7)], [RIGHT, RIGHT, RIGHT], batch=20)
    stuck.step(act(stuck, MOVE_UP, MOVE_UP, MOVE_UP))  # the head is at the wall: nobody moves
    assert (stuck.pos == np.array([[4, 5], [4, 6], [4, 7]])).all()


@pytest.mark.parametrize("name", ["cleanup", "harvest"])
def test_random_play_never_stacks_agents_or_enters_walls(name):
    w = make_world(name, 8, 8, seed=2)
    w.reset()
    rng = np.random.default_rng(0)
    for _ in range(60):
        w.step(rng.integers(0, w.spec.n_actions, size=(8, w.b)))
        cells = w.pos[..., 0] * 100 + w.pos[..., 1]
        assert all(len(set(row)) == w.n for row in cells.tolist())
        assert not w.walls[w.pos[..., 0], w.pos[..., 1]].any()


def test_view_is_rotated_so_the_agent_faces_up():
    rows = ("@@@@@@@", "@  A  @", "@     @", "@  P  @", "@     @", "@P    @", "@@@@@@@")
    w = placed(rows, [(3, 3), (5, 1)], [UP, UP])
    view = w.observe()[0, 0]  # agent 0: apple 2 ahead, agent 1 two down and two left
    assert view[7, 7].tolist() == list(AGENT_COLOURS[0])
    assert view[5, 7].tolist() == list(APPLE)
    assert view[9, 5].tolist() == list(AGENT_COLOURS[1])
    assert view[4, 7].tolist() == list(WALL)  # the top wall, 3 ahead
    assert view[0, 0].tolist() == [0, 0, 0]  # outside the map
    w.step(act(w, TURN_CW, STAY))  # now facing right: the apple is on the agent's left
    view = w.observe()[0, 0]
    assert view[7, 5].tolist() == list(APPLE)
    assert view[9, 9].tolist() == list(AGENT_COLOURS[1])  # south-west is now behind-right
    w.step(act(w, TURN_CW, STAY))  # facing down: the apple is behind
    assert w.observe()[0, 0, 9, 7].tolist() == list(APPLE)
    w.step(act(w, TURN_CW, STAY))  # facing left: the apple is on the right
    assert w.observe()[0, 0, 7, 9].tolist() == list(APPLE)


def test_moving_toward_what_the_view_shows_eats_the_apple():
    rows = ("@@@@@@@", "@  A  @", "@     @", "@  P  @", "@P    @", "@@@@@@@")
    w = placed(rows, [(3, 3)], [RIGHT])  # the apple appears on the left in this agent's view
    assert w.step(act(w, MOVE_LEFT)).rewards.tolist() == [[0.0]]
    res = w.step(act(w, MOVE_LEFT))
    assert res.rewards.dtype == np.float32 and res.rewards.tolist() == [[1.0]]
    assert not w.apples.any() and w.eaten.tolist() == [[1]]
    assert w.episode_metrics()["apples_eaten"] == 1.0


def test_equality():
    returns = np.array([[3, 3, 3, 3], [4, 0, 0, 0], [0, 0, 0, 0], [1, 2, 3, 0]])
    # [1,2,3,0]: sum_ij |Ri-Rj| = 2 * (1+2+1+1+2+3) = 20; 1 - 20 / (2*4*6) = 7/12
    assert equality(returns).tolist() == pytest.approx([1.0, 0.25, 1.0, 7 / 12])


@pytest.mark.parametrize("name", ["cleanup", "harvest"])
def test_spec_masks_and_horizon(name):
    w = make_world(name, 4, 3, seed=0)
    spec = w.spec
    assert (spec.obs_shape, spec.obs_dtype, spec.horizon, spec.default_action) == ((15, 15, 3), "uint8", 100, STAY)
    assert spec.candidates == complete_graph(4) and not spec.dynamic_neighbors
    res = w.reset()
    assert res.obs.shape == (4, 3, 15, 15, 3) and res.obs.dtype == np.uint8
    assert all(m.shape == (3, 3) and m.all() for m in res.masks)
    stay = np.full((4, 3), STAY)
    with pytest.raises(RuntimeError):
        make_world(name, 4, 3, seed=0).step(stay)  # no reset yet
    done = [w.step(stay).done for _ in range(100)]
    assert done == [False] * 99 + [True]
    assert set(w.episode_metrics()) == set(w.metric_columns())
    with pytest.raises(RuntimeError):
        w.step(stay)
    w.reset()
    with pytest.raises(ValueError):
        w.step(np.full((4, 3), spec.n_actions))


def _play(w, actions):
    return [(r.obs, r.rewards) for r in (w.step(a) for a in actions)]


@pytest.mark.parametrize("name", ["cleanup", "harvest"])
def test_same_seed_same_numbers_and_state_round_trip(name):
    rng = np.random.default_rng(5)
    n_act = make_world(name, 4, 1, 0).spec.n_actions
    actions = rng.integers(0, n_act, size=(60, 4, 4))
    a, b = make_world(name, 4, 4, seed=7), make_world(name, 4, 4, seed=7)
    assert np.array_equal(a.reset().obs, b.reset().obs)
    for (oa, ra), (ob, rb) in zip(_play(a, actions[:30]), _play(b, actions[:30])):
        assert np.array_equal(oa, ob) and np.array_equal(ra, rb)
    plain = msgpack.unpackb(msgpack.packb(json.loads(json.dumps(a.get_state()))))
    c = make_world(name, 4, 4, seed=123)
    c.reset()
    c.set_state(plain)
    for (oa, ra), (oc, rc) in zip(_play(a, actions[30:]), _play(c, actions[30:])):
        assert np.array_equal(oa, oc) and np.array_equal(ra, rc)
    assert a.episode_metrics() == c.episode_metrics()
    assert np.array_equal(a.reset().obs, c.reset().obs)
    other = "harvest" if name == "cleanup" else "cleanup"
    with pytest.raises(ValueError):
        make_world(other, 4, 4, seed=0).set_state(plain)


def test_render_text_and_rgb():
    w = placed(OPEN, [(4, 4), (1, 2)], [UP, LEFT])
    text = w.render_text(0).splitlines()
    assert text[4][4] == "0" and text[1][2] == "1" and text[0] == "@" * 9
    assert text[-1] == "t=0 0^ 1<"
    frame = w.render_rgb(0, scale=4)
    assert frame.shape == (36, 36, 3) and frame.dtype == np.uint8
    assert frame[4 * 4 + 1, 4 * 4 + 2].tolist() == list(AGENT_COLOURS[0])

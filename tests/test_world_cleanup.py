"""Cleanup: the map, CLEAN beams cell by cell, and the apple/waste spawn rules (statistically)."""

from __future__ import annotations

import numpy as np
import pytest

from envserver.worlds.cleanup import CLEAN, CLEANUP_MAP, CleanupWorld, spawn_probabilities
from envserver.worlds.gridworld import LEFT, STAY, UP

# 8x7 river for beams, a walled-off block of 49 waste cells that keeps the density >= 0.4 (no spawning)
BEAM_MAP = (
    ("@" * 9,)
    + ("@RRRRRRR@",) * 8
    + ("@" * 9,)
    + ("@HHHHHHH@",) * 7
    + ("@PPPPPPP@", "@" * 9)
)
WALLED_MAP = ("@" * 9,) + ("@RR@RRRR@",) * 3 + BEAM_MAP[9:]


def cells(mask: np.ndarray) -> set[tuple[int, int]]:
    return {(int(r), int(c)) for r, c in np.argwhere(mask)}


def fire(rows, agents, waste, batch=1, seed=0):
    """Agents [((r, c), heading, action)] on `rows` with extra waste cells; one step. Returns the world."""
    w = CleanupWorld(n_agents=len(agents), batch=batch, seed=seed, rows=rows)
    w.reset()
    w.pos[:] = np.array([p for p, _, _ in agents])
    w.ori[:] = np.array([o for _, o, _ in agents])
    for r, c in waste:
        w.waste[:, r, c] = True
    res = w.step(np.repeat(np.array([[a] for _, _, a in agents]), batch, axis=1))
    assert (res.rewards == 0).all()  # cleaning is free
    return w


def test_full_map_facts():
    w = CleanupWorld()
    assert w.grid.shape == (11, 18) and len(w.spawns) == 8
    assert (int(w.grid.cells("H").sum()), int(w.grid.cells("R").sum()), int(w.apple_ground.sum())) == (20, 26, 40)
    assert (w.spec.n_agents, w.spec.n_actions) == (4, 8)
    w.reset()
    assert w.waste_density().tolist() == pytest.approx([20 / 46])  # 0.435 > 0.4: nothing grows yet
    for _ in range(100):
        w.step(np.full((4, 1), STAY))
    assert not w.apples.any() and w.waste.sum() == 20
    CleanupWorld(n_agents=8)
    with pytest.raises(ValueError):
        CleanupWorld(n_agents=9)
    assert CLEANUP_MAP[0] == "@" * 18 and CLEANUP_MAP[-1] == "@" * 18


def test_lanes_stop_at_their_first_waste_cell():
    # facing up from (8, 4): centre lane col 4 rows 7..3, side lanes cols 3 and 5 rows 8..4
    w = fire(BEAM_MAP, [((8, 4), UP, CLEAN)], [(6, 4), (4, 4), (8, 3), (7, 3), (5, 5)])
    assert cells(w.waste[0, :9]) == {(4, 4), (7, 3)}
    assert cells(w.beam[0]) == {(7, 4), (6, 4), (8, 3), (8, 5), (7, 5), (6, 5), (5, 5)}
    assert w.cleaned.tolist() == [3] and w.episode_metrics()["waste_cleaned"] == 3.0


def test_lane_reach():
    # centre reaches 5 ahead (row 3), not 6; side lanes reach 4 ahead (row 4), not 5
    w = fire(BEAM_MAP, [((8, 4), UP, CLEAN)], [(3, 4), (2, 4), (3, 3), (4, 5)])
    assert cells(w.waste[0, :9]) == {(2, 4), (3, 3)}


def test_walls_stop_lanes():
    # facing left from (2, 5): centre (2,4) then the wall at (2,3); the side lanes hit it at (1,3), (3,3)
    w = fire(WALLED_MAP, [((2, 5), LEFT, CLEAN)], [(1, 4), (1, 2), (2, 1), (3, 2)])
    assert cells(w.waste[0, :4]) == {(1, 2), (2, 1), (3, 2)}
    assert cells(w.beam[0]) == {(2, 4), (1, 5), (1, 4), (3, 5), (3, 4)}


def test_agents_absorb_lanes():
    w = fire(BEAM_MAP, [((8, 4), UP, CLEAN), ((6, 4), UP, STAY)], [(6, 4), (5, 4)])
    assert cells(w.waste[0, :9]) == {(6, 4), (5, 4)}
    assert (6, 4) in cells(w.beam[0]) and (5, 4) not in cells(w.beam[0])


def test_beams_act_one_after_another():
    # both agents' lanes run up column 5: whoever fires second finds (7, 5) clean and reaches (5, 5)
    w = fire(BEAM_MAP, [((8, 4), UP, CLEAN), ((8, 6), UP, CLEAN)], [(7, 5), (5, 5)], batch=8)
    assert not w.waste[:, :9].any()
    assert w.cleaned.tolist() == [2] * 8


def test_spawn_probability_formula():
    p_apple, p_waste = spawn_probabilities(np.array([0.0, 0.1, 0.2, 0.39, 0.4, 0.7]))
    assert p_apple.tolist() == pytest.approx([0.05, 0.0375, 0.025, 0.00125, 0.0, 0.0])
    assert p_waste.tolist() == [0.5] * 4 + [0.0] * 2


SPAWN_MAP = ("@@@@@@@@@@@@", "@RRRRRRRRRR@", "@BBBBBBBBBB@", "@BBBBBBBBBB@", "@BBBBBBBBBB@", "@P         @")


def spawn_round(w: CleanupWorld, n_waste: int) -> tuple[int, np.ndarray]:
    """One STAY step from no apples and `n_waste` waste cells; returns (new apples, new waste per copy)."""
    w.apples[:] = False
    w.waste[:] = False
    w.waste[:, 1, 1 : 1 + n_waste] = True
    w.step(np.full((1, w.b), STAY))
    return int(w.apples.sum()), w.waste.sum(axis=(1, 2)) - n_waste


@pytest.mark.parametrize("n_waste", [4, 5, 8])
def test_no_apples_or_waste_spawn_at_density_at_or_above_threshold(n_waste):
    w = CleanupWorld(n_agents=1, batch=100, seed=1, rows=SPAWN_MAP)
    w.reset()
    for _ in range(20):
        apples, new_waste = spawn_round(w, n_waste)  # density n_waste / 10 >= 0.4
        assert apples == 0 and (new_waste == 0).all()


@pytest.mark.parametrize("n_waste", [0, 1, 2, 3])
def test_apple_spawn_rate_follows_density(n_waste):
    w = CleanupWorld(n_agents=1, batch=500, seed=2, rows=SPAWN_MAP)
    w.reset()
    rounds, free = 4, int(w.apple_ground.sum())  # the agent stands on floor, not on an apple cell
    spawned = sum(spawn_round(w, n_waste)[0] for _ in range(rounds))
    n, p = rounds * w.b * free, 0.05 * (1 - (n_waste / 10) / 0.4)
    assert abs(spawned - n * p) <= 4 * np.sqrt(n * p * (1 - p))


def test_waste_spawns_at_most_one_uniform_cell_per_step():
    w = CleanupWorld(n_agents=1, batch=2000, seed=3, rows=SPAWN_MAP)
    w.reset()
    _, new = spawn_round(w, 2)  # density 0.2, k = 8 clean cells: P(one new) = 1 - 0.5^8
    assert set(new.tolist()) <= {0, 1}
    p = 1 - 0.5**8
    assert abs(new.sum() - w.b * p) <= 4 * np.sqrt(w.b * p * (1 - p))
    where = w.waste[:, 1, 3:11].sum(axis=0)  # the 8 candidate cells share the new waste uniformly
    expect = new.sum() / 8
    assert (np.abs(where - expect) <= 4 * np.sqrt(expect * 7 / 8)).all()

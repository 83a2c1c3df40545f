"""Harvest: the map and the 3x3-neighbourhood regrowth rule (statistically)."""

from __future__ import annotations

import numpy as np
import pytest

from envserver.worlds.gridworld import STAY
from envserver.worlds.harvest import HARVEST_MAP, SPAWN_PROB, HarvestWorld, neighbour_counts

# blocks of apple cells; each block's centre (row 2) is the cell whose regrowth a test watches
BLOCKS_MAP = (
    "@" * 29,
    "@AAAAA AAA AAA AAA AAA AAA P@",
    "@AAAAA AAA AAA AAA AAA AAA P@",
    "@AAAAA AAA AAA AAA AAA AAA  @",
    "@" * 29,
)
CENTRES = [(2, 3), (2, 8), (2, 12), (2, 16), (2, 20), (2, 24)]
# apples set around each centre and the neighbour count they give
AROUND = [
    [(1, 1), (2, 1), (3, 1), (1, 5), (2, 5), (3, 5)],  # 2 columns away: count 0
    [(1, 8)],
    [(1, 11), (3, 13)],  # diagonals count (dx^2 + dy^2 = 2 <= APPLE_RADIUS)
    [(1, 15), (2, 15), (3, 17)],
    [(1, 19), (1, 20), (1, 21), (3, 19), (3, 21)],  # 5 neighbours: capped at 3
    [(1, 23), (2, 23), (3, 23), (1, 25)],  # centre under an agent: never regrows
]
COUNTS = [0, 1, 2, 3, 5, 4]


def test_full_map_facts():
    w = HarvestWorld()
    assert w.grid.shape == (7, 38) and len(w.spawns) == 9 and int(w.apple_ground.sum()) == 58
    assert (w.spec.n_agents, w.spec.n_actions) == (4, 7)
    w.reset()
    assert w.apples.sum() == 58 and w.episode_metrics()["apples_left"] == 58.0
    HarvestWorld(n_agents=9)
    with pytest.raises(ValueError):
        HarvestWorld(n_agents=10)
    assert HARVEST_MAP[0] == "@" * 38 and HARVEST_MAP[-1] == "@" * 38


def _setup(w: HarvestWorld) -> None:
    w.apples[:] = False
    for around in AROUND:
        for r, c in around:
            w.apples[:, r, c] = True


def test_neighbour_counts_are_3x3():
    w = HarvestWorld(n_agents=1, batch=1, seed=0, rows=BLOCKS_MAP)
    _setup(w)
    counts = neighbour_counts(w.apples)[0]
    assert [int(counts[rc]) for rc in CENTRES] == COUNTS


def test_regrowth_probability_by_neighbour_count():
    w = HarvestWorld(n_agents=1, batch=1000, seed=4, rows=BLOCKS_MAP)
    w.reset()
    rounds = 10
    grown = np.zeros(len(CENTRES), dtype=np.int64)
    for _ in range(rounds):
        _setup(w)
        w.pos[:] = np.array([CENTRES[-1]])
        w.step(np.full((1, w.b), STAY))
        grown += np.array([int(w.apples[:, r, c].sum()) for r, c in CENTRES])
    n = rounds * w.b
    p = SPAWN_PROB[[0, 1, 2, 3, 3]]
    assert SPAWN_PROB.tolist() == [0.0, 0.005, 0.02, 0.05]
    assert grown[0] == 0 and grown[-1] == 0
    assert (np.abs(grown[1:5] - n * p[1:]) <= 4 * np.sqrt(n * p[1:] * (1 - p[1:]))).all()

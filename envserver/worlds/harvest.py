"""Harvest (env-reference 1.2, 1.7): apples regrow only next to other apples; over-harvesting kills a patch.

Map: rows 1-5 of the standard 16x38 Harvest map between two walls (7x38, 58 apple cells, 9 spawn
points). Actions: the 7 base actions (firing disabled).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from envserver.worlds.gridworld import APPLE, HORIZON, N_BASE_ACTIONS, GridWorld, Layer, equality

HARVEST_MAP = (
    "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@",
    "@ P   P      A    P AAAAA    P  A P  @",
    "@  P     A P AA    P    AAA    A  A  @",
    "@     A AAA  AAA    A    A AA AAAA   @",
    "@ A  AAA A    A  A AAA  A  A   A A   @",
    "@AAA  A A    A  AAA A  AAA        A P@",
    "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@",
)

# regrowth probability by the number of apples among the 8 neighbours, capped at 3 (env-reference 1.7)
SPAWN_PROB = np.array([0.0, 0.005, 0.02, 0.05])


def neighbour_counts(apples: np.ndarray) -> np.ndarray:
    """[B, H, W] number of apples in the 3x3 block around each cell, the cell itself excluded.

    (The reference tests dx^2 + dy^2 <= APPLE_RADIUS = 2, which is exactly the 3x3 block.)
    """
    b, h, w = apples.shape
    padded = np.zeros((b, h + 2, w + 2), dtype=np.int64)
    padded[:, 1:-1, 1:-1] = apples
    block = sum(padded[:, dr : dr + h, dc : dc + w] for dr in range(3) for dc in range(3))
    return block - apples


class HarvestWorld(GridWorld):
    """Harvest; all dynamic state is the base engine's (apples)."""

    NAME = "harvest"
    N_ACTIONS = N_BASE_ACTIONS
    MAP = HARVEST_MAP

    def __init__(
        self,
        n_agents: int = 4,
        batch: int = 1,
        seed: int = 0,
        rows: Sequence[str] = HARVEST_MAP,
        horizon: int = HORIZON,
    ):
        super().__init__(rows, n_agents, batch, seed, horizon)
        self.apple_ground = self.grid.cells("A")

    def metric_columns(self) -> tuple[str, ...]:
        return ("apples_eaten", "apples_left", "equality")

    def episode_metrics(self) -> dict[str, float]:
        """Means over the B copies: apples eaten by all agents, apples on the map at the end, equality
        of the agents' returns (= apples eaten, +1 each)."""
        return {
            "apples_eaten": float(self.eaten.sum(axis=1).mean()),
            "apples_left": float(self.apples.sum(axis=(1, 2)).mean()),
            "equality": float(equality(self.eaten).mean()),
        }

    def _reset_layers(self) -> None:
        self.apples[:] = self.apple_ground

    def _layers(self) -> list[Layer]:
        return [Layer(self.apples, APPLE, "A")]

    def _grow(self) -> None:
        """Every empty apple cell without an agent regrows with SPAWN_PROB[min(neighbour apples, 3)]."""
        p = SPAWN_PROB[np.minimum(neighbour_counts(self.apples), 3)]
        free = self.apple_ground & ~self.apples & ~self.occupancy()
        self.apples |= free & (self.rng.random(self.apples.shape) < p)

"""Cleanup (env-reference 1.2-1.6): apples grow only while the river is clean enough; cleaning is free.

Map: rows 10-18 of the standard 25x18 Cleanup map between a top and a bottom wall (11x18, 8 spawn
points, 20 of 46 river cells polluted: initial waste density 0.435, above the 0.4 depletion threshold,
so nothing grows until the agents clean). Actions: the 7 base actions + CLEAN (id 7); firing disabled.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from envserver.worlds.gridworld import (
    APPLE,
    CLEAN_BEAM,
    DIRS,
    HORIZON,
    N_BASE_ACTIONS,
    WASTE,
    GridWorld,
    Layer,
    equality,
)

CLEANUP_MAP = (
    "@@@@@@@@@@@@@@@@@@",
    "@RRRRR   P P BBBB@",
    "@HHHHH   P  BBBBB@",
    "@RRRRRR    P BBBB@",
    "@HHHHHH P   BBBBB@",
    "@RRRRR       BBBB@",
    "@HHHH    P  BBBBB@",
    "@RRRRR       BBBB@",
    "@HHHHH  P P BBBBB@",
    "@RRRRR       BBBB@",
    "@@@@@@@@@@@@@@@@@@",
)

CLEAN = N_BASE_ACTIONS  # 7
THRESHOLD_DEPLETION = 0.4
THRESHOLD_RESTORATION = 0.0
WASTE_SPAWN_PROB = 0.5
APPLE_RESPAWN_PROB = 0.05
BEAM_LENGTH = 5
# (forward, right) offsets of the 3 beam lanes (env-reference 1.4): centre 1..5 ahead, sides 0..4 ahead
LANES = np.array(
    [[(d, 0) for d in range(1, BEAM_LENGTH + 1)]] + [[(d, s) for d in range(BEAM_LENGTH)] for s in (-1, 1)],
    dtype=np.int64,
)  # [3, 5, 2]


def spawn_probabilities(density: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(apple, waste) spawn probabilities per copy for waste densities d [B] (env-reference 1.6).

    d >= 0.4: both 0. Otherwise waste 0.5 and apple 0.05 * (1 - (d - 0.0) / (0.4 - 0.0)), i.e. 0.05 at d <= 0.
    """
    active = density < THRESHOLD_DEPLETION
    decline = (density - THRESHOLD_RESTORATION) / (THRESHOLD_DEPLETION - THRESHOLD_RESTORATION)
    apple = APPLE_RESPAWN_PROB * np.where(density <= THRESHOLD_RESTORATION, 1.0, 1.0 - decline)
    return np.where(active, apple, 0.0), np.where(active, WASTE_SPAWN_PROB, 0.0)


class CleanupWorld(GridWorld):
    """Cleanup; extra public state: waste [B, H, W] bool, cleaned [B] int64 (waste cells cleaned this
    episode), beam [B, H, W] bool (cells the CLEAN beams covered this step, drawn in the views)."""

    NAME = "cleanup"
    N_ACTIONS = N_BASE_ACTIONS + 1
    MAP = CLEANUP_MAP

    def __init__(
        self,
        n_agents: int = 4,
        batch: int = 1,
        seed: int = 0,
        rows: Sequence[str] = CLEANUP_MAP,
        horizon: int = HORIZON,
    ):
        super().__init__(rows, n_agents, batch, seed, horizon)
        self.river = self.grid.cells("HR")  # potential waste area
        self.apple_ground = self.grid.cells("B")
        self.waste = np.zeros_like(self.apples)
        self.beam = np.zeros_like(self.apples)
        self.cleaned = np.zeros(batch, dtype=np.int64)

    def waste_density(self) -> np.ndarray:
        """[B] fraction of the river cells that are polluted (0 if the map has no river)."""
        return self.waste.sum(axis=(1, 2)) / max(int(self.river.sum()), 1)

    def metric_columns(self) -> tuple[str, ...]:
        return ("apples_eaten", "waste_cleaned", "equality")

    def episode_metrics(self) -> dict[str, float]:
        """Means over the B copies: apples eaten by all agents, waste cells cleaned, equality of the
        agents' returns (= apples eaten, +1 each)."""
        return {
            "apples_eaten": float(self.eaten.sum(axis=1).mean()),
            "waste_cleaned": float(self.cleaned.mean()),
            "equality": float(equality(self.eaten).mean()),
        }

    def _reset_layers(self) -> None:
        self.waste = np.broadcast_to(self.grid.cells("H"), self.waste.shape).copy()
        self.apples[:] = False
        self.beam[:] = False
        self.cleaned[:] = 0

    def _layers(self) -> list[Layer]:
        return [
            Layer(self.waste, WASTE, "H"),
            Layer(self.apples, APPLE, "A"),
            Layer(self.beam, CLEAN_BEAM, "~", over_agents=True),
        ]

    def _extra_state(self) -> dict:
        return {"waste": self.waste.tolist(), "cleaned": self.cleaned.tolist()}

    def _load_extra_state(self, state: dict) -> None:
        self.waste = self._load(state["waste"], self.waste)
        self.cleaned = self._load(state["cleaned"], self.cleaned)
        self.beam[:] = False

    def _special_actions(self, actions: np.ndarray, order: np.ndarray) -> None:
        """CLEAN beams, one agent at a time in priority order (a cleaned cell no longer stops a later beam)."""
        self.beam[:] = False
        cleaning = actions == CLEAN
        if not cleaning.any():
            return
        occ = self.occupancy()
        copies = np.arange(self.b)
        for k in range(self.n):
            agent = order[:, k]
            fires = cleaning[copies, agent]
            if fires.any():
                self._clean(copies[fires], agent[fires], occ)

    def _clean(self, copies: np.ndarray, agents: np.ndarray, occ: np.ndarray) -> None:
        """CLEAN by agents[m] in copies[m]: each lane runs until a wall (excluded) or its first agent or
        waste cell (included); a waste cell it ends on becomes clean (so at most one per lane), one under
        an agent does not."""
        o = self.ori[copies, agents]
        fwd = DIRS[o][:, None, None, :]
        right = DIRS[(o + 1) % 4][:, None, None, :]
        cells = self.pos[copies, agents][:, None, None, :] + LANES[..., :1] * fwd + LANES[..., 1:] * right
        h, w = self.grid.shape
        r, c = np.clip(cells[..., 0], 0, h - 1), np.clip(cells[..., 1], 0, w - 1)  # [m, 3, 5]
        cb = np.broadcast_to(copies[:, None, None], r.shape)
        wall = self.blocked(cells)
        agent = ~wall & occ[cb, r, c]  # an agent absorbs the lane, even on a waste cell
        dirty = ~wall & ~agent & self.waste[cb, r, c]
        absorbs = agent | dirty
        stop = wall | absorbs
        first = np.where(stop.any(axis=2), stop.argmax(axis=2), BEAM_LENGTH)[..., None]  # [m, 3, 1]
        depth = np.arange(BEAM_LENGTH)
        hit = (depth < first) | ((depth == first) & absorbs)
        cleaned = hit & dirty
        self.waste[cb[cleaned], r[cleaned], c[cleaned]] = False
        self.beam[cb[hit], r[hit], c[hit]] = True
        self.cleaned[copies] += cleaned.sum(axis=(1, 2))

    def _grow(self) -> None:
        """Apple and waste spawning from the waste density after this step's cleaning (env-reference 1.6).

        Apples: every free `B` cell (no apple, no agent) independently with the apple probability.
        Waste: at most one new waste cell. The reference walks the clean river cells in random order and
        pollutes the first that passes a 0.5 coin; equivalently, with probability 1 - (1 - 0.5)^k
        (k clean river cells) one uniformly chosen clean river cell becomes waste.
        """
        p_apple, p_waste = spawn_probabilities(self.waste_density())
        free = self.apple_ground & ~self.apples & ~self.occupancy()
        self.apples |= free & (self.rng.random(self.apples.shape) < p_apple[:, None, None])
        clean = self.river & ~self.waste
        k = clean.sum(axis=(1, 2))
        spawn = np.flatnonzero(self.rng.random(self.b) < 1.0 - (1.0 - p_waste) ** k)
        keys = np.where(clean, self.rng.random(self.waste.shape), -1.0).reshape(self.b, -1)
        self.waste.reshape(self.b, -1)[spawn, keys[spawn].argmax(axis=1)] = True

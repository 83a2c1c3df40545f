"""Cooperative Predation (paper section 5.1): a sequential N-player Prisoner's Dilemma on a line.

N predators and one static prey live on [0, 30]. Each step an agent moves -1 or +1; moving toward the
prey (judged before the move; an agent exactly on the prey counts +1 as toward) is cooperation.
Per-step rewards: all cooperate -> -1 each; all defect -> -2N + 1 each; mixed -> cooperators -2N,
defectors 0. Everyone observes s^t = [x_1 - x_tar, ..., x_N - x_tar] / 30.

Neighbours: with N > 2, agents within normalised distance 0.1 of each other (paper section 5.1, the
8-agent experiments). With N = 2 the pair always exchanges: the paper's two-agent study (Fig. 3) is the
plain two-player dilemma, and with the distance rule two random starts are neighbours on only ~19% of
steps - measured here, SS then collapses to defection (cc_rate 0.02 vs 0.87 with the pair linked).
"""

from __future__ import annotations

import numpy as np

from envserver.worlds._common import AGENT_COLOURS, EpisodeClock, RngOnlyState, cells_to_pixels, check_actions
from envserver.worlds.base import StepResult, World, WorldSpec, complete_graph, full_masks

LENGTH = 30.0  # the line X = [0, 30]
HORIZON = 30
NEIGHBOUR_RADIUS = 0.1  # normalised distance |x_i - x_j| / 30 at which agents are neighbours
MOVES = np.array([-1.0, +1.0])  # action 0: left, action 1: right

PREY_RGB, PREY_COLUMN_RGB = (255, 64, 64), (60, 60, 60)

# joint-action categories of one (step, copy)
ALL_COOPERATE, MIXED, ALL_DEFECT = 0, 1, 2


class PredationWorld(RngOnlyState, World):
    """B vectorised copies of Cooperative Predation with N >= 2 predators."""

    @classmethod
    def describe(cls, n_agents: int, batch: int) -> WorldSpec:
        """The spec of a predation world, without building one."""
        if n_agents < 2:
            raise ValueError(f"predation needs at least 2 agents, got {n_agents}")
        return WorldSpec(
            name="predation",
            n_agents=n_agents,
            batch=batch,
            obs_shape=(n_agents,),
            obs_dtype="float32",
            n_actions=2,
            horizon=HORIZON,
            default_action=0,
            candidates=complete_graph(n_agents),
            dynamic_neighbors=n_agents > 2,
        )

    def __init__(self, n_agents: int, batch: int, seed: int) -> None:
        self.spec = self.describe(n_agents, batch)
        self.rng = np.random.default_rng(seed)
        self.clock = EpisodeClock(HORIZON)
        self.positions = np.zeros((n_agents, batch))  # x_i per copy, float64
        self.prey = np.zeros(batch)  # x_tar per copy
        self.cooperated = np.zeros((n_agents, batch), dtype=bool)  # who moved toward the prey last step
        # categories[t, b]: ALL_COOPERATE / MIXED / ALL_DEFECT of step t+1 in copy b (-1 = not played yet)
        self.categories = np.full((HORIZON, batch), -1, dtype=np.int8)

    def reset(self) -> StepResult:
        """Draw a fresh prey and fresh predator starts, uniform on [0, 30], in every copy."""
        n, b = self.spec.n_agents, self.spec.batch
        self.prey = self.rng.uniform(0.0, LENGTH, size=b)
        self.positions = self.rng.uniform(0.0, LENGTH, size=(n, b))
        self.cooperated = np.zeros((n, b), dtype=bool)
        self.categories.fill(-1)
        self.clock.start()
        return self._result(np.zeros((n, b), dtype=np.float32), done=False)

    def place(self, positions: np.ndarray, prey: np.ndarray) -> StepResult:
        """Scripting/test helper: overwrite x_i [N, B] and x_tar [B] mid-episode; returns obs and masks."""
        n, b = self.spec.n_agents, self.spec.batch
        self.positions = np.broadcast_to(np.asarray(positions, dtype=np.float64), (n, b)).copy()
        self.prey = np.broadcast_to(np.asarray(prey, dtype=np.float64), (b,)).copy()
        return self._result(np.zeros((n, b), dtype=np.float32), done=False)

    def step(self, actions: np.ndarray) -> StepResult:
        """Move every predator by -1/+1, clip to [0, 30] and pay the dilemma rewards."""
        a = check_actions(actions, self.spec)
        done = self.clock.tick()
        toward = np.where(self.positions <= self.prey, 1, 0)  # the action that approaches x_tar
        self.cooperated = a == toward
        rewards = self._dilemma_rewards(self.cooperated)
        self.positions = np.clip(self.positions + MOVES[a], 0.0, LENGTH)
        self.categories[self.clock.t - 1] = self._category(self.cooperated)
        return self._result(rewards, done)

    def _dilemma_rewards(self, coop: np.ndarray) -> np.ndarray:
        """Per-agent rewards [N, B] of one step from the cooperation flags [N, B]."""
        n = self.spec.n_agents
        all_c = coop.all(axis=0)
        all_d = ~coop.any(axis=0)
        mixed_reward = np.where(coop, -2.0 * n, 0.0)  # cooperators -2N, defectors (free riders) 0
        r = np.where(all_c, -1.0, np.where(all_d, -2.0 * n + 1.0, mixed_reward))
        return r.astype(np.float32)

    @staticmethod
    def _category(coop: np.ndarray) -> np.ndarray:
        """Joint-action category [B] of one step."""
        return np.where(coop.all(axis=0), ALL_COOPERATE, np.where(coop.any(axis=0), MIXED, ALL_DEFECT))

    def _result(self, rewards: np.ndarray, done: bool) -> StepResult:
        n = self.spec.n_agents
        state = ((self.positions - self.prey) / LENGTH).astype(np.float32)  # s^t, shape [N, B]
        obs = np.broadcast_to(state.T, (n, *state.T.shape)).copy()  # same [B, N] vector for every agent
        return StepResult.at_clock(self.spec, obs, rewards, done, self._masks())

    def _masks(self) -> list[np.ndarray]:
        """masks[i][b, m]: |x_i - x_j| / 30 <= 0.1 for j = candidates[i][m], at the current positions
        (all True for N = 2: see the module docstring)."""
        if not self.spec.dynamic_neighbors:
            return full_masks(self.spec)
        dist = np.abs(self.positions[:, None, :] - self.positions[None, :, :]) / LENGTH  # [N, N, B]
        near = dist <= NEIGHBOUR_RADIUS
        return [near[i, list(c), :].T.copy() for i, c in enumerate(self.spec.candidates)]

    def render_rgb(self, b: int = 0) -> np.ndarray:
        """Row 0 the prey, row i+1 predator i, on the line's 31 unit cells; the prey's column shaded."""
        n = self.spec.n_agents
        img = np.zeros((n + 1, int(LENGTH) + 1, 3), dtype=np.uint8)
        prey = int(round(self.prey[b]))
        img[:, prey] = PREY_COLUMN_RGB
        img[0, prey] = PREY_RGB
        for i, x in enumerate(self.positions[:, b]):
            img[i + 1, int(round(x))] = AGENT_COLOURS[i % len(AGENT_COLOURS)]
        return cells_to_pixels(img)

    def metric_columns(self) -> tuple[str, ...]:
        """cc_rate for N > 2; cc/cd/dd rates for the two-agent dilemma (paper Fig. 3)."""
        if self.spec.n_agents == 2:
            return ("cc_rate", "cd_rate", "dd_rate")
        return ("cc_rate",)

    def episode_metrics(self) -> dict[str, float]:
        """Fractions of played (step, copy) pairs in each joint-action category (NaN before any step)."""
        played = self.categories[: max(self.clock.t, 0)]
        rates = {
            "cc_rate": played == ALL_COOPERATE,
            "cd_rate": played == MIXED,
            "dd_rate": played == ALL_DEFECT,
        }
        return {k: float(rates[k].mean()) if played.size else float("nan") for k in self.metric_columns()}

    def render_text(self, b: int = 0) -> str:
        """One line of 31 unit cells: P prey, agent id mod 10, '+' for several agents, '@' agent on prey."""
        cells = ["."] * (int(LENGTH) + 1)
        for i, x in enumerate(self.positions[:, b]):
            c = int(round(x))
            cells[c] = str(i % 10) if cells[c] == "." else "+"
        p = int(round(self.prey[b]))
        cells[p] = "P" if cells[p] == "." else "@"
        return "".join(cells)

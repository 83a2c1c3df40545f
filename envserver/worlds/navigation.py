"""Cooperative Navigation (paper section 5.1): agents on a 5x5 grid each walk to their own target.

Cells are (x, y) with x the column and y the row (row 0 on top). Actions: 0 left (x-1), 1 right (x+1),
2 up (y-1), 3 down (y+1), 4 stay; moves are clipped to the grid. Reward of agent i after the move:
-(Manhattan distance to its own target) - 1 if it shares its cell with any other agent.
Agent i observes all agents' cells and its own target, each coordinate divided by 4.
Communication follows the line graph 0-1-...-(N-1).
"""

from __future__ import annotations

import numpy as np

from envserver.worlds._common import AGENT_COLOURS, EpisodeClock, RngOnlyState, cells_to_pixels, check_actions
from envserver.worlds.base import StepResult, World, WorldSpec, full_masks, line_graph

SIZE = 5  # the grid is SIZE x SIZE
HORIZON = 100
COLLISION_PENALTY = 1.0
# (dx, dy) of actions left, right, up, down, stay
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1], [0, 0]], dtype=np.int64)
STAY = 4


class NavigationWorld(RngOnlyState, World):
    """B vectorised copies of Cooperative Navigation with N agents on a 5x5 grid."""

    @classmethod
    def describe(cls, n_agents: int, batch: int) -> WorldSpec:
        """The spec of a navigation world, without building one."""
        if n_agents < 1:
            raise ValueError(f"navigation needs at least 1 agent, got {n_agents}")
        return WorldSpec(
            name="navigation",
            n_agents=n_agents,
            batch=batch,
            obs_shape=(2 * n_agents + 2,),
            obs_dtype="float32",
            n_actions=len(MOVES),
            horizon=HORIZON,
            default_action=STAY,
            candidates=line_graph(n_agents),
            dynamic_neighbors=False,
        )

    def __init__(self, n_agents: int, batch: int, seed: int) -> None:
        self.spec = self.describe(n_agents, batch)
        self.rng = np.random.default_rng(seed)
        self.clock = EpisodeClock(HORIZON)
        self.cells = np.zeros((n_agents, batch, 2), dtype=np.int64)  # (x, y) of every agent
        self.targets = np.zeros((n_agents, batch, 2), dtype=np.int64)  # (x, y) of every agent's target
        self._collision_sum = 0.0  # sum over steps, agents, copies of the collision indicator
        self._distance_sum = 0.0  # ... of the Manhattan distance to the own target

    def reset(self) -> StepResult:
        """Draw independent uniform targets, then uniform starting cells, in every copy."""
        n, b = self.spec.n_agents, self.spec.batch
        self.targets = self.rng.integers(0, SIZE, size=(n, b, 2))
        self.cells = self.rng.integers(0, SIZE, size=(n, b, 2))
        self._collision_sum = self._distance_sum = 0.0
        self.clock.start()
        return self._result(np.zeros((n, b), dtype=np.float32), done=False)

    def place(self, cells: np.ndarray, targets: np.ndarray) -> StepResult:
        """Scripting/test helper: overwrite agent cells and targets ([N, B, 2] (x, y)); returns obs, masks."""
        shape = (self.spec.n_agents, self.spec.batch, 2)
        self.cells = np.broadcast_to(np.asarray(cells, dtype=np.int64), shape).copy()
        self.targets = np.broadcast_to(np.asarray(targets, dtype=np.int64), shape).copy()
        return self._result(np.zeros(shape[:2], dtype=np.float32), done=False)

    def step(self, actions: np.ndarray) -> StepResult:
        """Move every agent, clip to the grid, and pay -distance - collision penalty."""
        a = check_actions(actions, self.spec)
        done = self.clock.tick()
        self.cells = np.clip(self.cells + MOVES[a], 0, SIZE - 1)
        distance = np.abs(self.cells - self.targets).sum(axis=-1)  # Manhattan, [N, B]
        collided = self._collisions()
        rewards = (-distance - COLLISION_PENALTY * collided).astype(np.float32)
        self._collision_sum += float(collided.sum())
        self._distance_sum += float(distance.sum())
        return self._result(rewards, done)

    def _collisions(self) -> np.ndarray:
        """[N, B] bool: agent i shares its cell with at least one other agent."""
        same = (self.cells[:, None] == self.cells[None, :]).all(axis=-1)  # [N, N, B]
        return same.sum(axis=1) > 1  # every agent matches itself once

    def _result(self, rewards: np.ndarray, done: bool) -> StepResult:
        n, b = self.spec.n_agents, self.spec.batch
        everyone = self.cells.transpose(1, 0, 2).reshape(b, 2 * n)  # [B, 2N]: x_0, y_0, x_1, y_1, ...
        obs = np.concatenate([np.broadcast_to(everyone, (n, b, 2 * n)), self.targets], axis=-1)
        return StepResult.at_clock(self.spec, (obs / (SIZE - 1)).astype(np.float32), rewards, done,
                                   full_masks(self.spec))

    def render_rgb(self, b: int = 0) -> np.ndarray:
        """The 5x5 grid: targets in their agent's colour at half brightness, agents in full colour."""
        img = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
        for i, (x, y) in enumerate(self.targets[:, b].tolist()):
            img[y, x] = AGENT_COLOURS[i % len(AGENT_COLOURS)] // 2
        for i, (x, y) in enumerate(self.cells[:, b].tolist()):
            img[y, x] = AGENT_COLOURS[i % len(AGENT_COLOURS)]
        return cells_to_pixels(img)

    def metric_columns(self) -> tuple[str, ...]:
        """Collision rate and mean distance to target."""
        return ("collisions", "mean_distance")

    def episode_metrics(self) -> dict[str, float]:
        """Means per step, per agent, over the batch (NaN before any step)."""
        count = max(self.clock.t, 0) * self.spec.n_agents * self.spec.batch
        if count == 0:
            return {"collisions": float("nan"), "mean_distance": float("nan")}
        return {"collisions": self._collision_sum / count, "mean_distance": self._distance_sum / count}

    def render_text(self, b: int = 0) -> str:
        """SIZE lines of SIZE cells: agent id mod 10, '+' for several agents, letter a, b, ... for targets."""
        grid = [["."] * SIZE for _ in range(SIZE)]
        for i, (x, y) in enumerate(self.targets[:, b].tolist()):
            grid[y][x] = chr(ord("a") + i % 26)
        occupied: set[tuple[int, int]] = set()
        for i, (x, y) in enumerate(self.cells[:, b].tolist()):
            grid[y][x] = "+" if (x, y) in occupied else str(i % 10)
            occupied.add((x, y))
        return "\n".join("".join(row) for row in grid)

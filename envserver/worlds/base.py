"""The contract every world implements: B parallel copies of an N-agent game, stepped in lockstep.

All copies of a batch run the same fixed horizon T, so every agent's rollout is a dense [T, B] block.
Each step says, per agent and copy, whether that agent's episode ended there and how: `terminated` (a
true end: nothing to bootstrap) or `truncated` (cut short: bootstrap with V(o')). At T every agent
still playing ends as the world's `spec.time_limit` declares ("end" -> terminated, as for our four
worlds, whose T is the end of the task; "truncate" -> truncated). An agent whose episode ended before T
(only third-party worlds do this) keeps its last observation and zero rewards until T: padded steps,
which the learners mask out. Arrays are numpy, agent-major: observations [N, B, *obs_shape], rewards
[N, B] float32, actions [N, B] int64, flags [N, B] bool.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from protocol.wire.spec import WorldSpec  # noqa: F401  (re-exported: part of the world contract)


@dataclass
class StepResult:
    """What one reset/step returns. masks[i] is [B, len(candidates[i])] bool (True = neighbour now)."""

    obs: np.ndarray  # [N, B, *obs_shape], dtype spec.obs_dtype
    rewards: np.ndarray  # [N, B] float32 (zeros after reset)
    done: bool  # t reached the horizon T: the batch is finished
    masks: list[np.ndarray]
    terminated: np.ndarray  # [N, B] bool: agent i's episode in copy b truly ended at this step
    truncated: np.ndarray  # [N, B] bool: it was cut short at this step (the critic bootstraps)

    @classmethod
    def at_clock(cls, spec: WorldSpec, obs: np.ndarray, rewards: np.ndarray, done: bool,
                 masks: list[np.ndarray]) -> "StepResult":
        """A step of a world whose episodes end only at T, as `spec.time_limit` says."""
        ends = np.full((spec.n_agents, spec.batch), done)
        never = np.zeros_like(ends)
        if spec.time_limit == "end":
            return cls(obs, rewards, done, masks, terminated=ends, truncated=never)
        return cls(obs, rewards, done, masks, terminated=never, truncated=ends)


class World(ABC):
    """B seeded, vectorised copies of one game. Same seed and same calls -> same numbers, bit for bit."""

    spec: WorldSpec

    @abstractmethod
    def reset(self) -> StepResult:
        """Start a new episode in every copy (fresh random starts drawn from the world's RNG)."""

    @abstractmethod
    def step(self, actions: np.ndarray) -> StepResult:
        """Apply joint actions [N, B] int64; returns own observations, own rewards and masks."""

    @abstractmethod
    def metric_columns(self) -> tuple[str, ...]:
        """Env-specific metric names appended after the common columns of metrics.csv."""

    @abstractmethod
    def episode_metrics(self) -> dict[str, float]:
        """Env-specific metrics of the finished episode batch (means over B), keyed by metric_columns."""

    @abstractmethod
    def render_text(self, b: int = 0) -> str:
        """A small human-readable picture of copy b."""

    @abstractmethod
    def render_rgb(self, b: int = 0) -> np.ndarray:
        """An RGB picture [H, W, 3] uint8 of copy b (frames of an episode GIF)."""

    @abstractmethod
    def get_state(self) -> dict:
        """Everything needed to continue bit-identically after a resume (at an episode boundary)."""

    @abstractmethod
    def set_state(self, state: dict) -> None:
        """Inverse of get_state."""


def full_masks(spec: WorldSpec) -> list[np.ndarray]:
    """All-True masks: every candidate is a neighbour at every step (static graphs)."""
    return [np.ones((spec.batch, len(c)), dtype=bool) for c in spec.candidates]


def line_graph(n: int) -> tuple[tuple[int, ...], ...]:
    """0-1-2-...-(n-1)."""
    return tuple(tuple(j for j in (i - 1, i + 1) if 0 <= j < n) for i in range(n))


def complete_graph(n: int) -> tuple[tuple[int, ...], ...]:
    """Every agent is a candidate neighbour of every other."""
    return tuple(tuple(j for j in range(n) if j != i) for i in range(n))

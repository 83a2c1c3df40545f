"""The contract every world implements: B parallel copies of an N-agent game, stepped in lockstep.

All worlds of a batch run the same fixed horizon T (time-limit truncation at t = T, never early
termination), so every agent's rollout is a dense [T, B] block. Arrays are numpy, agent-major:
observations [N, B, *obs_shape], rewards [N, B] float32, actions [N, B] int64.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from protocol.spec import WorldSpec  # noqa: F401  (re-exported: part of the world contract)


@dataclass
class StepResult:
    """What one reset/step returns. masks[i] is [B, len(candidates[i])] bool (True = neighbour now)."""

    obs: np.ndarray  # [N, B, *obs_shape], dtype spec.obs_dtype
    rewards: np.ndarray  # [N, B] float32 (zeros after reset)
    truncated: bool  # the time limit was reached at this step (the batch is finished)
    masks: list[np.ndarray]


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

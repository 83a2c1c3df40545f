"""Public per-batch metrics of a run: the single definition used by `ss-sim` and `ss-envserver`."""

from __future__ import annotations

import numpy as np

from envserver.worlds.base import World

COMMON_COLUMNS = ("episode", "collective_return", "normalized_return", "missing_actions")


def metric_columns(world: World) -> tuple[str, ...]:
    """Header of metrics.csv for this world."""
    return COMMON_COLUMNS + tuple(world.metric_columns())


class BatchReturns:
    """Accumulates the rewards of one episode batch (all agents, all steps, all parallel worlds)."""

    def __init__(self, world: World):
        self.world = world
        self.total = np.zeros(world.spec.batch, dtype=np.float64)
        self.missing_actions = 0

    def add(self, rewards: np.ndarray, missing: int = 0) -> None:
        """Add one step's rewards [N, B] (and how many agents got the default action)."""
        self.total += rewards.astype(np.float64).sum(axis=0)
        self.missing_actions += missing

    def row(self, episodes_so_far: int) -> dict[str, object]:
        """The metrics.csv row: collective return per episode (mean over B) and normalised by N*T."""
        spec = self.world.spec
        collective = float(self.total.mean())
        return {
            "episode": episodes_so_far,
            "collective_return": collective,
            "normalized_return": collective / (spec.n_agents * spec.horizon),
            "missing_actions": self.missing_actions,
            **{k: float(v) for k, v in self.world.episode_metrics().items()},
        }

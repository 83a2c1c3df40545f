"""CL's central learner's run loop, the same code in `ss-critic` and in `ss-sim`: per update, every agent's
REWARD report in, the team advantage out to the agents that reported, then the critic's K steps, its
train log row and its checkpoint on the run's schedule. A generator: it yields `Reports` (the reply: one
report per agent, None for a straggler) and `Advantages` (to send; the reply is None). `agent/central.py`
answers over ZeroMQ with its deadline; `coordinator/sim.py` with every agent's report at hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generator

import numpy as np

from agent.central_critic import CentralCritic
from agent.records import open_central_log, save_checkpoint
from protocol.run.config import RunConfig
from protocol.run.rundir import RunDir


@dataclass(frozen=True)
class Reports:
    """Every agent's REWARD report of update `update`."""

    update: int


@dataclass(frozen=True)
class Advantages:
    """The team advantage of update `update`, for the agents `to` (those that reported)."""

    update: int
    advantages: np.ndarray
    to: tuple[int, ...]


CentralLoop = Generator[Reports | Advantages, Any, None]


def central_loop(critic: CentralCritic, config: RunConfig, run_dir: RunDir, start: int) -> CentralLoop:
    """Updates `start` .. the last of CL's central critic."""
    train_log = open_central_log(run_dir, config.kept_episodes(start))
    try:
        for update in range(start, config.updates):
            reports = yield Reports(update)
            advantages = critic.advantages(reports)
            yield Advantages(update, advantages, tuple(i for i, report in enumerate(reports) if report is not None))
            episode = (update + 1) * config.batch
            train_log.append({"update": update + 1, "episode": episode, **critic.fit()})
            if config.checkpoint_due(update + 1):
                save_checkpoint(run_dir.central_checkpoint, update + 1, episode, critic.state_dict())
    finally:
        train_log.close()

"""The env server's run loop, the same code in `ss-envserver` and in `ss-sim`.

Per episode batch: collect the agents' RESETs, reset the world, give each agent its own OBS; per step
collect their actions (an agent whose action did not come gets the world's default action, counted in
metrics.csv), step, give each its OBS; then the batch's metrics.csv row, and the world's checkpoint on
the run's schedule. The loop is a generator: it yields `Collect` (the reply: what each agent that made it
sent, RESET bodies or STEP action arrays) and `Observations` (sent to each agent; the reply is None).
`envserver/server.py` answers over ZeroMQ with its deadlines; `coordinator/sim.py` in memory, with every
agent's request at hand.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Generator

import numpy as np

from envserver.metrics import BatchReturns, metric_columns
from envserver.observe import observation
from envserver.worlds import StepResult, World
from protocol.run.checkpoints import save_json
from protocol.run.config import RunConfig
from protocol.run.csvlog import CsvLog
from protocol.run.rundir import RunDir
from protocol.run.topology import project_mask
from protocol.wire.messages import Kind


@dataclass(frozen=True)
class Collect:
    """Every live agent's `kind` (RESET or STEP) for step `step` of batch `episode`."""

    kind: Kind
    episode: int
    step: int


@dataclass(frozen=True)
class Observations:
    """Each agent's OBS body after step `step` (0: the reset) of batch `episode`."""

    episode: int
    step: int
    bodies: dict[int, dict[str, object]]


WorldLoop = Generator[Collect | Observations, Any, None]


class EnvLoop:
    """The world's episode batches from a start update to the last."""

    def __init__(self, world: World, config: RunConfig, neighbors: dict[int, tuple[int, ...]], run_dir: RunDir,
                 log: logging.Logger, tensorboard: bool = False):
        self.world = world
        self.spec = world.spec
        self.config = config
        self.neighbors = neighbors
        self.run_dir = run_dir
        self.log = log
        self.tensorboard = tensorboard
        self.row: dict[str, object] = {}  # the last batch's metrics.csv row

    def run(self, start: int) -> WorldLoop:
        """Batches `start` .. the last: metrics.csv gets one row each, the world is checkpointed when due."""
        cfg, rd = self.config, self.run_dir
        metrics = CsvLog(rd.metrics, metric_columns(self.world), cfg.kept_episodes(start),
                         rd.tensorboard if self.tensorboard else None)
        try:
            for update in range(start, cfg.updates):
                self.row = yield from self.play_batch(update)
                metrics.append(self.row)
                if self.row["missing_actions"]:
                    self.log.warning("batch %d: %d agent-steps used the default action", update,
                                     self.row["missing_actions"])
                if cfg.checkpoint_due(update + 1):
                    save_json(rd.world_checkpoint, {"update": update + 1, "world": self.world.get_state()})
        finally:
            metrics.close()

    def play_batch(self, update: int) -> Generator[Collect | Observations, Any, dict[str, object]]:
        """One episode batch in lockstep; returns its metrics.csv row."""
        everyone = set(range(self.config.agents))
        resets = yield Collect(Kind.RESET, update, 0)
        returns = BatchReturns(self.world)
        yield self.observations(self.world.reset(), update, 0, everyone - set(resets))
        for t in range(1, self.spec.horizon + 1):
            steps = yield Collect(Kind.STEP, update, t)
            actions = np.full((self.config.agents, self.config.batch), self.spec.default_action, dtype=np.int64)
            for i, acts in steps.items():
                actions[i] = acts
            defaulted = everyone - set(steps)
            result = self.world.step(actions)
            returns.add(result.rewards, missing=len(defaulted))
            yield self.observations(result, update, t, defaulted)
        return returns.row((update + 1) * self.config.batch)

    def observations(self, result: StepResult, episode: int, step: int, defaulted: set[int]) -> Observations:
        """Each agent its own observation, reward and mask, nothing of anyone else's; an agent whose action
        was defaulted gets its OBS too (`default_used`), so it can catch up instead of waiting."""
        return Observations(episode, step, {
            i: observation(result, i, episode, step,
                           project_mask(self.spec.candidates[i], result.masks[i], self.neighbors[i]), i in defaulted)
            for i in range(self.config.agents)})

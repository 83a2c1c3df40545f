"""One agent's run loop, the same code in `ss-sim` (every agent in one process) and in `ss-agent` (ZeroMQ).

The loop is a generator. Whenever it needs something from outside the agent it yields a request and is
sent the reply: `Reset` and `Step` go to the world (the reply is the agent's own OBS body: observation,
reward, episode ends, neighbour mask), `TeamAdvantage` to CL's central learner (the reply is its ADV body),
`Exchange` to the neighbours (the reply is what each sent this round, `Received`). A transport answers
them: `drive` with a function that asks over ZeroMQ (agent/process.py), or `coordinator/sim.py`, which
gathers every agent's request and answers them all at once in memory. A transport raises a fault into the
loop where it happened: `Behind` (the env server or the central learner moved on without us) makes the
loop rejoin at the batch named; a neighbour missing from an `Exchange` reply is a communication gap, which
the learner counts and drops. Everything else (the rollout, the K rounds, train.csv, checkpoints, the nan
rows of missed updates) is here once, so both runtimes behave alike by construction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Generator

import numpy as np

from agent.env_link import Behind
from agent.exchange import Body, Outgoing
from agent.ppo import PPOLearner
from agent.records import missed_row, open_train_log, save_checkpoint
from protocol.run.config import RunConfig
from protocol.run.csvlog import CsvLog
from protocol.loops import advance
from protocol.wire.messages import Kind
from protocol.run.rundir import RunDir
from protocol.wire.spec import WorldSpec


@dataclass(frozen=True)
class Reset:
    """Ask the world for episode batch `episode`; the reply is the OBS body of step 0."""

    episode: int


@dataclass(frozen=True)
class Step:
    """Our actions [B] for step `step` (1..T) of batch `episode`; the reply is the OBS body after it."""

    episode: int
    step: int
    actions: np.ndarray


@dataclass(frozen=True)
class TeamAdvantage:
    """CL: our REWARD body for update `update`; the reply is the central learner's ADV body."""

    update: int
    report: Body


@dataclass(frozen=True)
class Exchange:
    """Round `round_id`: what we send, and the kinds we expect from each neighbour; the reply is `Received`."""

    round_id: int
    out: Outgoing
    expect: dict[int, frozenset[Kind]]


Request = Reset | Step | TeamAdvantage | Exchange
Loop = Generator[Request, Any, None]


class AgentDriver:
    """Agent `me`'s updates from a start update to the last, over whatever transport answers its requests."""

    def __init__(self, me: int, learner: PPOLearner, config: RunConfig, spec: WorldSpec, run_dir: RunDir,
                 log: logging.Logger, tensorboard: bool = False):
        self.me = me
        self.learner = learner
        self.config = config
        self.spec = spec
        self.run_dir = run_dir
        self.log = log
        self.tensorboard = tensorboard
        self.update = 0  # the update under way (the coordinator's heartbeats report it)

    def run(self, start: int) -> Loop:
        """Updates `start` .. config.updates - 1, checkpointing on the run's schedule."""
        config, learner = self.config, self.learner
        train_log = open_train_log(self.run_dir, self.me, config.kept_episodes(start), self.tensorboard)
        self.update = start
        try:
            while self.update < config.updates:
                try:
                    yield from self.rollout(self.update)
                    if config.algorithm.central_learner:  # CL: the team advantage replaces our own
                        learner.receive_advantages((yield TeamAdvantage(self.update, learner.report())))
                except Behind as behind:
                    self.update = self.rejoin(self.update, behind, train_log)
                    continue
                learner.begin_update()
                for k in range(config.iterations):
                    round_id = self.update * config.iterations + k
                    learner.update_step(k, (yield Exchange(round_id, learner.outgoing(k), learner.expected(k))))
                self.update += 1
                episode = self.update * config.batch
                train_log.append({"update": self.update, "episode": episode, **learner.end_update()})
                if config.checkpoint_due(self.update):
                    save_checkpoint(self.run_dir.checkpoint(self.me), self.update, episode, learner.state_dict())
        finally:
            train_log.close()

    def rollout(self, update: int) -> Loop:
        """One episode batch in lockstep with the world: act on our own observations only."""
        learner = self.learner
        reply = yield Reset(update)
        for t in range(1, self.spec.horizon + 1):
            actions = learner.act(reply["obs"], reply["mask"])
            reply = yield Step(update, t, np.asarray(actions, dtype=np.int64))
            if reply["default_used"]:
                self.log.warning("agent %d: the env server used the default action for us at step %d", self.me, t)
            learner.record(reply["reward"], reply["terminated"], reply["truncated"], reply["obs"],
                           executed=not reply["default_used"])

    def rejoin(self, update: int, behind: Behind, train_log: CsvLog) -> int:
        """Skip to the episode batch the env server (or central learner) says we can join; returns it. The
        missed updates get nan rows, and the last checkpoint due among them is written (our state,
        unchanged), so a later resume still finds an update every process holds."""
        config = self.config
        join = min(behind.episode, config.updates)
        self.log.warning("agent %d: behind the env server (%s): %s", self.me, behind,
                         f"missed updates {update + 1}..{join}" if join > update else f"redoing update {update + 1}")
        for missed in range(update + 1, join + 1):
            train_log.append(missed_row(missed, missed * config.batch))
        due = [u for u in range(update + 1, join + 1) if config.checkpoint_due(u)]
        if due:
            self.learner.skip_to(due[-1])
            save_checkpoint(self.run_dir.checkpoint(self.me), due[-1], due[-1] * config.batch,
                            self.learner.state_dict())
        self.learner.skip_to(join)
        return join


def drive(loop: Loop, answer: Callable[[Request], Any]) -> None:
    """Run one agent's loop to its end, answering each request with `answer`; a `Behind` that `answer`
    raises goes into the loop at the request that met it."""
    request = advance(loop, None)
    while request is not None:
        try:
            reply = answer(request)
        except Behind as behind:
            try:
                request = loop.throw(behind)
            except StopIteration:
                return
            continue
        request = advance(loop, reply)

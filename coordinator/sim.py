"""`ss-sim`: N learners and the world in one process, exchanging through memory.

This is the reference the multi-process runtime must match bit for bit. Every agent runs the very loop an
`ss-agent` process runs (agent/driver.py), and the world the very loop `ss-envserver` runs
(envserver/lockstep.py); here their requests are answered in memory, all agents' at once: the world's
loop gets every agent's RESET or STEP, the round's messages go through each agent's round bookkeeping as
the network would deliver them, and CL's team advantage is computed as the central learner does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import torch

from agent.algorithms import make_learner
from agent.central_critic import CentralCritic
from agent.central_loop import central_loop
from agent.driver import AgentDriver, Request, Reset, Step, TeamAdvantage
from agent.records import load_checkpoints
from agent.rounds import MemoryNetwork, RoundBook
from coordinator.progress import RunProgress
from envserver.lockstep import EnvLoop
from envserver.worlds import World, make_world
from protocol.run.topology import resolve_neighbors
from protocol.run.checkpoints import discard, read_json, resume_point, versions
from protocol.loops import advance
from protocol.run.config import RunConfig, write_toml
from protocol.transport.inbox import Inbox
from protocol.run.rundir import RunDir


log = logging.getLogger("ss-sim")

class Simulation:
    """One in-process run: the world, one Learner per agent (and CL's central critic), and the run directory.
    `network` delivers the exchange rounds (tests pass one whose `deliver` loses, repeats or delays)."""

    def __init__(self, config: RunConfig, out: Path, tensorboard: bool = False,
                 network: type[MemoryNetwork] = MemoryNetwork):
        self.config = config
        self.run_dir = RunDir(out)
        self.tensorboard = tensorboard  # also write metrics and every agent's train log as TensorBoard events
        self.world: World = make_world(config.env, config.agents, config.batch, config.seed)
        self.spec = self.world.spec
        self.neighbors = resolve_neighbors(config, self.spec)
        self.learners = [make_learner(i, self.spec, self.neighbors[i], config) for i in range(config.agents)]
        # CL: the central learner's critic, driven exactly as agent/central.py drives it
        self.central = CentralCritic(self.spec, config) if config.algorithm.central_learner else None
        self.start_update = 0
        self.network = network({i: RoundBook(i, Inbox(f"agent {i}", log), log) for i in range(config.agents)},
                               self.neighbors)

    def resume(self) -> int:
        """Load the newest checkpoint that every learner and the world hold (protocol/run/checkpoints.py), if
        any; returns the update to continue from. RuntimeError if they hold none in common."""
        saved = {f"agent {i}": load_checkpoints(self.run_dir.checkpoint(i)) for i in range(self.config.agents)}
        if self.central is not None:  # CL: the central critic's checkpoint must agree as well
            saved["central learner"] = load_checkpoints(self.run_dir.central_checkpoint)
        saved["world"] = versions(self.run_dir.world_checkpoint, read_json)
        try:
            update = resume_point({name: set(states) for name, states in saved.items()})
        except ValueError as err:
            raise RuntimeError(f"{self.run_dir.root}: {err}") from err
        if update == 0:
            return 0
        for i, learner in enumerate(self.learners):
            learner.load_state_dict(saved[f"agent {i}"][update]["learner"])
        if self.central is not None:
            self.central.load_state_dict(saved["central learner"][update]["learner"])
        self.world.set_state(saved["world"][update]["world"])
        self.start_update = update
        return update

    def run(self, progress: bool = True) -> None:
        """Train for config.updates episode batches, writing metrics, train logs and checkpoints."""
        self.open(progress)
        try:
            self.play(lambda requests: False)
        finally:
            self.close()

    def open(self, progress: bool = True) -> None:
        """Start the world's loop, CL's central learner's, and every agent's, each up to its first request."""
        torch.set_num_threads(1)
        config, rd = self.config, self.run_dir
        rd.make(config.agents)
        write_toml(config, rd.config)
        if not self.start_update:  # a fresh run: never resume into an older run's checkpoints later
            for path in (*map(rd.checkpoint, range(config.agents)), rd.central_checkpoint, rd.world_checkpoint):
                discard(path)
        self.env = EnvLoop(self.world, config, self.neighbors, rd, log, self.tensorboard)
        self.world_loop = self.env.run(self.start_update)
        advance(self.world_loop, None)  # up to its first Collect
        self.central_loop = central_loop(self.central, config, rd, self.start_update) if self.central is not None else None
        if self.central_loop is not None:
            advance(self.central_loop, None)  # up to its first Reports
        self.bar = RunProgress(config, self.start_update, enabled=progress)
        self.loops = {i: AgentDriver(i, learner, config, self.spec, rd, log, self.tensorboard).run(self.start_update)
                      for i, learner in enumerate(self.learners)}
        self.requests = {i: request for i, loop in self.loops.items() if (request := advance(loop, None))}

    def play(self, until: Callable[[dict[int, Request]], bool]) -> None:
        """Answer the agents' requests, all together, until `until(requests)` holds or every loop has ended."""
        while self.requests and not until(self.requests):
            asked = self.requests
            replies = self.answer(asked)
            self.requests = {i: request for i, loop in self.loops.items() if (request := advance(loop, replies[i]))}

    def rollout(self) -> None:
        """Play the next episode batch (the agents then wait for their first exchange round)."""
        self.play(lambda requests: not isinstance(requests[0], (Reset, Step)))

    def train(self) -> None:
        """Play the rest of the update: every exchange round and gradient pass, train logs, checkpoints."""
        self.play(lambda requests: isinstance(requests[0], Reset))

    def close(self) -> None:
        for loop in (*self.loops.values(), self.world_loop, *([self.central_loop] if self.central_loop else [])):
            loop.close()
        self.bar.close()

    def answer(self, requests: dict[int, Request]) -> dict[int, Any]:
        """Every agent's reply to its request, all asked in lockstep: the world's reset or step (as the env
        server plays it), the central critic's team advantage (as the central learner computes it), or the
        round's messages, routed as the network would."""
        first = requests[0]
        if any(type(request) is not type(first) for request in requests.values()):
            raise RuntimeError(f"agents out of lockstep: {sorted({type(r).__name__ for r in requests.values()})}")
        if isinstance(first, (Reset, Step)):
            return self.play_world(requests)
        if isinstance(first, TeamAdvantage):
            return self.team_advantages(requests)
        return self.network.exchange(first.round_id, {i: request.out for i, request in requests.items()},
                                     {i: request.expect for i, request in requests.items()})

    def play_world(self, requests: dict[int, Reset | Step]) -> dict[int, dict[str, object]]:
        """The world's loop (envserver/lockstep.py, as in `ss-envserver`) answered with every agent's request:
        each agent's OBS body."""
        sent = {i: request.actions if isinstance(request, Step) else {"episode": request.episode}
                for i, request in requests.items()}
        observations = advance(self.world_loop, sent)
        advance(self.world_loop, None)  # on to its next Collect (after a batch's last step: its metrics.csv row)
        if observations.step == self.spec.horizon:
            self.bar.advance(self.env.row)
        return observations.bodies

    def team_advantages(self, requests: dict[int, TeamAdvantage]) -> dict[int, dict[str, object]]:
        """CL's central learner's loop (agent/central_loop.py, as in `ss-critic`) answered with every agent's
        report: each agent's ADV body. Its critic steps follow at once, as the central learner takes them."""
        answer = advance(self.central_loop, [requests[i].report for i in sorted(requests)])
        advance(self.central_loop, None)  # the critic steps, train log, checkpoint; on to the next Reports
        return {i: {"advantages": answer.advantages} for i in answer.to}

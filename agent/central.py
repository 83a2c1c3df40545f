"""`ss-critic` (`python -m agent.central`): CL's central learner as its own process (DESIGN.md section 4).

It binds a ROUTER, registers with the coordinator (role "learner"), gets the DIRECTORY, reports READY and
waits for START. Per update it collects one REWARD (rewards and observations) from every agent, computes
the team advantage with its central critic (`agent/central_critic.py`), answers each agent with ADV, then
takes its K critic steps. It is the one process that sees every agent's reward, and the audit shows it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click
import torch

from agent.central_critic import CentralCritic, check_report
from agent.exchange import Body
from agent.central_loop import Advantages, Reports, central_loop
from agent.records import load_checkpoints
from protocol.loops import advance
from protocol.run.checkpoints import restore
from protocol.cliopts import process_options, run_process
from protocol.wire.messages import CENTRAL_LEARNER_ID, Kind, Message
from protocol.run.rundir import RunDir
from protocol.transport.rendezvous import Start
from protocol.transport.service import AgentFacing, Served
from protocol.transport.service import serve as run_service

log = logging.getLogger("ss-critic")


class CentralLearner(AgentFacing):
    """The central critic behind a bound ROUTER; each agent's replies go to the connection of its REWARD."""

    def __init__(self, served: Served):
        super().__init__(served)
        directory = served.directory
        self.spec = directory.spec
        self.critic = CentralCritic(directory.spec, directory.config)
        self.saved: dict[int, dict] = {}  # the critic's checkpoints by update, read only when resuming

    def collect(self, update: int, deadline_s: float) -> list[Body | None]:
        """One valid REWARD of round `update` per agent, in agent order, None for an agent whose report did not
        come before the deadline (a straggler: the update goes on without it); RuntimeError if none came.
        A REWARD of an earlier update is answered with EPISODE_END naming the update its sender can join."""
        agents = set(range(self.config.agents))
        got: dict[int, Message] = {}
        end = time.monotonic() + deadline_s
        while got.keys() != agents and (left := end - time.monotonic()) > 0:
            self.while_waiting()
            if not self.sock.poll(int(min(left, 0.5) * 1000)):
                continue
            msg = self.routes.receive({Kind.REWARD})
            if msg is None:
                continue
            if msg.round < update:
                self.send_join(msg.src, update, f"REWARD of update {msg.round} is stale: join update {update}")
            elif msg.round != update:
                self.inbox.drop("stale", f"REWARD of round {msg.round} from agent {msg.src}, expected {update}")
            elif (problem := check_report(msg.body, self.spec)) is not None:
                self.inbox.drop("invalid", f"REWARD from agent {msg.src}: {problem}")
            else:
                got[msg.src] = msg
                self.routes.attach(msg.src)
        missing = sorted(agents - got.keys())
        if len(missing) == len(agents):
            raise RuntimeError(f"no REWARD of update {update} from any agent within {deadline_s:.0f}s")
        if missing:
            log.warning("update %d: no REWARD from agents %s within %.0fs: they get no advantage this update, and "
                        "the critic skips it (its team reward would lack their share)", update, missing, deadline_s)
        return [got[i].body if i in got else None for i in sorted(agents)]

    def checkpoints(self) -> list[int]:
        """Read the critic's checkpoints (called only when the run resumes); their updates."""
        self.saved = load_checkpoints(self.run_dir.central_checkpoint)
        return sorted(self.saved)

    def run(self, start: Start) -> None:
        """The central learner's loop (agent/central_loop.py, as in `ss-sim`) from `start`, answered here."""
        restore(lambda state: self.critic.load_state_dict(state["learner"]), self.saved, start.checkpoint,
                self.run_dir.central_checkpoint)
        loop = central_loop(self.critic, self.config, self.run_dir, start.update)
        request = advance(loop, None)
        while request is not None:
            request = advance(loop, self.answer(request))

    def answer(self, request: Reports | Advantages) -> list[Body | None] | None:
        """Reports: every agent's REWARD by the deadline (a whole rollout lies between two updates' REWARDs:
        the reset deadline bounds the wait). Advantages: ADV to each agent that reported."""
        if isinstance(request, Reports):
            self.link.progress = request.update
            return self.collect(request.update, self.config.reset_deadline_s)
        for i in request.to:
            self.outbox.send(self.sock, Kind.ADV, {"advantages": request.advantages}, dest=f"agent:{i}",
                             endpoint=self.endpoint, routing_id=self.routes[i], round=request.update)
        return None


def serve(coordinator: str, bind: str, run_id: str, out: RunDir, advertise: str | None = None,
          keys_dir: Path | None = None) -> None:
    """Register with the coordinator as the central learner, wait for START, then serve the whole run."""
    torch.set_num_threads(1)
    run_service("learner", CENTRAL_LEARNER_ID, "cl", CentralLearner, coordinator=coordinator, bind=bind,
                run_id=run_id, out=out, log=log, advertise=advertise, keys_dir=keys_dir)


@click.command(epilog="Example: ss-critic --coordinator tcp://127.0.0.1:5550 --out runs/cl")
@process_options("the central learner's ROUTER", "agents", "logs/learner.{train.csv,checkpoint.pt,audit.log}")
def main(coordinator: str, bind: str, advertise: str | None, out: str, run_id: str, keys_dir: Path | None,
         verbose: bool) -> None:
    """Run CL's central learner: a critic on all agents' observations, trained on the sum of their rewards.

    Each update it receives every agent's rewards and observations (REWARD) and answers each with the
    team advantage (ADV). Start it with a coordinator whose config has algo = "cl" (ss-cluster does).
    """
    run_process("ss-critic", verbose, lambda: serve(coordinator, bind, run_id, RunDir(out), advertise=advertise,
                                                    keys_dir=keys_dir))


if __name__ == "__main__":
    main()

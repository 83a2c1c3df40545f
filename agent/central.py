"""`ss-critic` (`python -m agent.central`): CL's central learner as its own process (DESIGN.md section 4).

It binds a ROUTER, registers with the coordinator (role "learner"), gets the DIRECTORY, reports READY and
waits for START. Per update it collects one REWARD (rewards and observations) from every agent, computes
the team advantage with its central critic (`agent/central_critic.py`), answers each agent with ADV, then
takes its K critic steps. It is the one process that sees every agent's reward, and the audit shows it.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Callable

import click
import torch
import zmq

from agent.central_critic import CentralCritic, check_report
from agent.exchange import Body
from agent.records import open_central_log
from protocol import sockets
from protocol.audit import Outbox
from protocol.auditlog import AuditLog
from protocol.inbox import Inbox
from protocol.logsetup import Terminated, configure_logging, raise_on_sigterm
from protocol.messages import CENTRAL_LEARNER_ID, Kind, Message
from protocol.rendezvous import CoordinatorLink, Directory, RunStopped
from protocol.rundir import RunDir

log = logging.getLogger("ss-critic")

DEFAULT_COORDINATOR = "tcp://127.0.0.1:5550"


class CentralLearner:
    """The central critic behind a bound ROUTER; routes are fixed by each agent's first valid message."""

    def __init__(self, directory: Directory, sock: zmq.Socket, endpoint: str, outbox: Outbox, inbox: Inbox,
                 run_dir: RunDir, while_waiting: Callable[[], None] = lambda: None):
        self.config = directory.config
        self.spec = directory.spec
        self.critic = CentralCritic(directory.spec, directory.config)
        self.sock = sock
        self.endpoint = endpoint
        self.outbox = outbox
        self.inbox = inbox
        self.run_dir = run_dir
        self.while_waiting = while_waiting  # e.g. raise if the coordinator stopped the run
        self.routes: dict[int, bytes] = {}  # agent id -> routing id, fixed by its first valid message

    def collect(self, update: int, deadline_s: float) -> list[Body]:
        """One valid REWARD of round `update` from every agent, in agent order; RuntimeError after the deadline."""
        agents = set(range(self.config.agents))
        got: dict[int, Message] = {}
        end = time.monotonic() + deadline_s
        while got.keys() != agents and (left := end - time.monotonic()) > 0:
            self.while_waiting()
            if not self.sock.poll(int(min(left, 0.5) * 1000)):
                continue
            msg = self._receive(agents)
            if msg is None:
                continue
            if msg.round != update:
                self.inbox.drop("stale", f"REWARD of round {msg.round} from agent {msg.src}, expected {update}")
            elif (problem := check_report(msg.body, self.spec)) is not None:
                self.inbox.drop("invalid", f"REWARD from agent {msg.src}: {problem}")
            else:
                got[msg.src] = msg
        missing = sorted(agents - got.keys())
        if missing:
            raise RuntimeError(f"no REWARD of update {update} from agents {missing} within {deadline_s:.0f}s")
        return [got[i].body for i in sorted(got)]

    def _receive(self, agents: set[int]) -> Message | None:
        parts = self.sock.recv_multipart()
        if len(parts) != 2:
            return self.inbox.drop("invalid", f"{len(parts) - 1} frames (expected 1)")
        routing_id, frame = parts
        msg = self.inbox.accept(frame, kinds={Kind.REWARD}, src=agents, origin=f"rid {routing_id.hex()}")
        if msg is None:
            return None
        if self.routes.setdefault(msg.src, routing_id) != routing_id:
            return self.inbox.drop("unknown_sender", f"agent {msg.src} claimed from a second connection")
        return msg

    def run(self) -> None:
        """Every update: REWARDs in, team advantage out to each agent (ADV), then the K critic steps."""
        train_log = open_central_log(self.run_dir)
        try:
            for update in range(self.config.updates):
                # a whole rollout lies between two updates' REWARDs: the reset deadline bounds the wait
                advantages = self.critic.advantages(self.collect(update, self.config.reset_deadline_s))
                for i in range(self.config.agents):
                    self.outbox.send(self.sock, Kind.ADV, {"advantages": advantages}, dest=f"agent:{i}",
                                     endpoint=self.endpoint, routing_id=self.routes[i], round=update)
                stats = self.critic.fit()
                train_log.append({"update": update + 1, "episode": (update + 1) * self.config.batch, **stats})
        finally:
            train_log.close()


def serve(coordinator: str, bind: str, run_id: str, out: RunDir, register_deadline_s: float = 600.0,
          advertise: str | None = None) -> None:
    """Register with the coordinator as the central learner, wait for START, then serve the whole run."""
    torch.set_num_threads(1)
    ctx = zmq.Context()
    sock = sockets.router(ctx)
    if bind.endswith(":0"):
        endpoint = sockets.bind_random(sock)
    else:
        sock.bind(bind)
        endpoint = bind
    inbox = Inbox("learner", log, run=run_id)
    out.logs.mkdir(parents=True, exist_ok=True)
    outbox = Outbox("learner", "cl", run_id, CENTRAL_LEARNER_ID, AuditLog(out.process_audit("learner")))
    link = CoordinatorLink(ctx, coordinator, "learner", outbox, inbox)
    try:
        directory = link.register(advertise or endpoint, None, register_deadline_s)
        learner = CentralLearner(directory, sock, endpoint, outbox, inbox, out, link.check_stop)
        link.ready_and_wait_start(register_deadline_s)
        log.info("START: central critic for %d agents at %s", directory.config.agents, endpoint)
        try:
            learner.run()
        except RunStopped:
            raise  # the coordinator knows: it told us
        except (Exception, Terminated) as err:
            link.stop(f"error: {err}")
            raise
        link.stop("finished")
    finally:
        inbox.write_summary(out.logs / "learner.received.json")
        link.close()
        sock.close()
        outbox.log.close()
        ctx.term()


@click.command(epilog="Example: ss-critic --coordinator tcp://127.0.0.1:5550 --out runs/cl")
@click.option("--coordinator", default=DEFAULT_COORDINATOR, show_default=True, help="Coordinator endpoint.")
@click.option("--bind", default="tcp://127.0.0.1:0", show_default=True,
              help="Where to bind the central learner's ROUTER (port 0 = any free port).")
@click.option("--advertise", default=None, metavar="ENDPOINT",
              help="Endpoint agents should connect to, if not the bound one (NAT, containers, proxies).")
@click.option("--out", type=click.Path(file_okay=False), default="runs/latest", show_default=True,
              help="Run directory: writes logs/learner.train.csv and logs/learner.audit.log.")
@click.option("--run-id", default="ssmarl", show_default=True, help="Run id; must match the coordinator's.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(coordinator: str, bind: str, advertise: str | None, out: str, run_id: str, verbose: bool) -> None:
    """Run CL's central learner: a critic on all agents' observations, trained on the sum of their rewards.

    Each update it receives every agent's rewards and observations (REWARD) and answers each with the
    team advantage (ADV). Start it with a coordinator whose config has algo = "cl" (ss-cluster does).
    """
    configure_logging(verbose)
    raise_on_sigterm()
    try:
        serve(coordinator, bind, run_id, RunDir(out), advertise=advertise)
    except (RuntimeError, TimeoutError, Terminated) as err:
        click.echo(f"ss-critic: {err}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()

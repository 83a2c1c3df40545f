"""The `ss-agent` process: one agent, its private nets, rewards and RNG, talking only over ZeroMQ.

Lifecycle: bind our XPUB -> HELLO to the coordinator -> DIRECTORY (config, world spec, neighbours and
their endpoints) -> connect one SUB per neighbour -> wait until every neighbour subscribed to us ->
READY -> START -> the agent's loop (agent/driver.py: per update a rollout against the env server in
lockstep, (CL: the team advantage from the central learner), K exchange rounds with the neighbours, each
followed by one gradient pass, train.csv, checkpoint), its requests answered here over ZeroMQ -> STOP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import zmq

from agent.algorithms import make_learner
from agent.driver import AgentDriver, Request, Reset, Step, TeamAdvantage, drive
from agent.env_link import RETRY_MARGIN_S, EnvLink
from agent.learner_link import LearnerLink
from agent.peer_link import PeerLink
from agent.publisher import MAX_SUBSCRIPTION_BYTES, SUBSCRIPTION_HWM
from agent.records import load_checkpoints
from protocol.transport import sockets
from protocol.audit.outbox import Outbox
from protocol.audit.log import AuditLog
from protocol.run.checkpoints import restore
from protocol.transport.inbox import Inbox
from protocol.transport.keys import KeyRing, client_keys, server_keys
from protocol.logsetup import Terminated
from protocol.wire.messages import COORDINATOR_ID
from protocol.transport.rendezvous import CoordinatorLink, Directory, RunStopped
from protocol.run.rundir import RunDir

log = logging.getLogger("ss-agent")


@dataclass(frozen=True)
class AgentOptions:
    """How this agent process was started (its command line)."""

    agent_id: int
    neighbors: tuple[int, ...] | None
    coordinator: str
    bind: str
    out: Path
    run_id: str
    audit: str = "frames"
    advertise: str | None = None  # endpoint given to neighbours, if not the bound one
    keys: Path | None = None  # the run's CurveZMQ key directory (None: plain TCP)
    tensorboard: bool = False  # also write its private scalars as TensorBoard events
    register_deadline_s: float = 600.0


class AgentProcess:
    """Owns the sockets of one agent; the learning itself is the socket-free learner (`agent/ppo.py`, `agent/algorithms/ss.py`, `agent/algorithms/`)."""

    def __init__(self, opts: AgentOptions):
        self.opts = opts
        self.me = opts.agent_id
        self.run_dir = RunDir(opts.out)
        self.run_dir.agent(self.me).mkdir(parents=True, exist_ok=True)
        self.ctx = zmq.Context()
        self.keys = KeyRing(opts.keys, self.me) if opts.keys is not None else None
        self.auth = self.keys.authenticator(self.ctx) if self.keys is not None else None  # who may subscribe
        self.pub = sockets.xpub(self.ctx, curve=server_keys(self.keys), manual=True,
                                max_msg_size=MAX_SUBSCRIPTION_BYTES, rcv_hwm=SUBSCRIPTION_HWM)
        self.pub_endpoint = sockets.bind(self.pub, opts.bind)
        self.audit_log = AuditLog(self.run_dir.audit(self.me), mode=opts.audit)
        self.inbox = Inbox(f"agent {self.me}", log, run=opts.run_id, receipts=self.run_dir.receipts(self.me))
        # Until the DIRECTORY says which algorithm runs, only what every algorithm may send is allowed.
        self.outbox = Outbox("agent", "ippo", opts.run_id, self.me, self.audit_log)
        self.coordinator = CoordinatorLink(self.ctx, opts.coordinator, "agent", self.outbox, self.inbox,
                                           curve=client_keys(self.keys, COORDINATOR_ID))
        self.peers: PeerLink | None = None
        self.env: EnvLink | None = None
        self.central: LearnerLink | None = None  # CL only

    def run(self) -> None:
        """Register, train to the end, report STOP; any failure is reported to the coordinator too."""
        torch.set_num_threads(1)
        directory = self.coordinator.register(self.opts.advertise or self.pub_endpoint, self.opts.neighbors,
                                              self.opts.register_deadline_s)
        config = directory.config
        self.outbox = Outbox("agent", config.algo, self.opts.run_id, self.me, self.audit_log)
        self.coordinator.outbox = self.outbox
        learner = make_learner(self.me, directory.spec, directory.neighbors, config)
        self.peers = PeerLink(self.ctx, self.me, self.pub, self.pub_endpoint, directory.peers,
                              self.outbox, self.inbox, directory.spec.n_actions, learner.subscriptions(),
                              self.coordinator.check_stop, keys=self.keys)
        self.peers.wait_subscribed(self.opts.register_deadline_s)
        self.env = EnvLink(self.ctx, self.me, directory.envserver, self.outbox, self.inbox, directory.spec,
                           len(directory.neighbors), self.coordinator.check_stop, keys=self.keys)
        if config.algorithm.central_learner:  # CL: its advantages come from the central learner
            if directory.learner is None:
                raise RuntimeError("algo cl, but the DIRECTORY names no central learner")
            self.central = LearnerLink(self.ctx, directory.learner, self.outbox, self.inbox,
                                       directory.spec.horizon * directory.spec.batch, self.coordinator.check_stop,
                                       keys=self.keys)
        saved = load_checkpoints(self.run_dir.checkpoint(self.me)) if directory.resume else {}
        start = self.coordinator.ready_and_wait_start(self.opts.register_deadline_s, checkpoints=saved.keys())
        log.info("agent %d: START (%s, neighbours %s)%s", self.me, config.algo, list(directory.neighbors),
                 f", resuming from update {start.update}" if start.update else "")
        try:
            restore(lambda state: learner.load_state_dict(state["learner"]), saved, start.checkpoint,
                    self.run_dir.checkpoint(self.me))
            driver = AgentDriver(self.me, learner, config, directory.spec, self.run_dir, log, self.opts.tensorboard)
            drive(driver.run(start.update), lambda request: self.answer(request, directory))
        except RunStopped:
            raise  # the coordinator knows: it told us
        except (Exception, Terminated) as err:
            self.coordinator.stop(f"error: {err}")
            raise
        self.coordinator.stop("finished")

    def answer(self, request: Request, directory: Directory) -> Any:
        """Answer one request of the agent's loop over ZeroMQ (raises Behind when the env server or the
        central learner moved on without us)."""
        config = directory.config
        retry_s = config.step_deadline_s + RETRY_MARGIN_S
        give_up_s = config.reset_deadline_s + retry_s
        if isinstance(request, Reset):
            self.coordinator.progress = request.episode
            return self.env.reset(request.episode, retry_s, give_up_s).body
        if isinstance(request, Step):
            return self.env.step(request.episode, request.step, request.actions, retry_s, give_up_s).body
        if isinstance(request, TeamAdvantage):
            # the central learner waits up to the reset deadline for the slowest report
            return self.central.advantages(request.update, request.report, config.reset_deadline_s + RETRY_MARGIN_S)
        rows = directory.spec.horizon * directory.spec.batch
        return self.peers.exchange(request.round_id, request.out, request.expect, rows, config.round_deadline_s)

    def close(self) -> None:
        """Release sockets and write the receive-side accounting next to the audit log."""
        for link in (self.peers, self.env, self.central, self.coordinator):
            if link is not None:
                link.close()
        self.pub.close()
        if self.auth is not None:
            self.auth.stop()
        self.audit_log.close()
        self.inbox.write_summary(self.run_dir.agent(self.me) / "received.json")
        self.inbox.close()
        self.ctx.term()


def run_agent(opts: AgentOptions) -> None:
    """Run one agent process to completion."""
    process = AgentProcess(opts)
    try:
        process.run()
    finally:
        process.close()

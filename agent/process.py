"""The `ss-agent` process: one agent, its private nets, rewards and RNG, talking only over ZeroMQ.

Lifecycle: bind our XPUB -> HELLO to the coordinator -> DIRECTORY (config, world spec, neighbours and
their endpoints) -> connect one SUB per neighbour -> wait until every neighbour subscribed to us ->
READY -> START -> per update: roll out against the env server in lockstep, (CL: report the rollout to
the central learner and take its team advantage), then K exchange rounds with the neighbours, each
followed by one gradient pass -> train.csv, checkpoint -> STOP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import zmq

from agent.baselines import make_learner
from agent.baselines.cl import CLLearner
from agent.env_link import RETRY_MARGIN_S, Behind, EnvLink
from agent.learner_link import LearnerLink
from agent.ppo import PPOLearner
from agent.peer_link import PeerLink
from agent.publisher import MAX_SUBSCRIPTION_BYTES, SUBSCRIPTION_HWM
from agent.records import load_checkpoints, missed_row, open_train_log, save_checkpoint
from protocol import sockets
from protocol.audit import Outbox
from protocol.auditlog import AuditLog
from protocol.checkpoints import restore
from protocol.config import RunConfig
from protocol.csvlog import CsvLog
from protocol.inbox import Inbox
from protocol.keys import KeyRing, client_keys, server_keys
from protocol.logsetup import Terminated
from protocol.messages import COORDINATOR_ID
from protocol.rendezvous import CoordinatorLink, Directory, RunStopped
from protocol.rundir import RunDir

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
    """Owns the sockets of one agent; the learning itself is the socket-free learner (`agent/ppo.py`, `agent/learner.py`, `agent/baselines/`)."""

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
        if isinstance(learner, CLLearner):
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
            self.train(learner, directory, start.update)
        except RunStopped:
            raise  # the coordinator knows: it told us
        except (Exception, Terminated) as err:
            self.coordinator.stop(f"error: {err}")
            raise
        self.coordinator.stop("finished")

    def train(self, learner: PPOLearner, directory: Directory, start: int) -> None:
        """Updates `start` .. config.updates - 1, checkpointing on the run's schedule. When the env server
        has moved on without us, we rejoin at the batch it names; the updates missed get rows of nan."""
        config, spec = directory.config, directory.spec
        rows = spec.horizon * spec.batch
        train_log = open_train_log(self.run_dir, self.me, config.kept_episodes(start), self.opts.tensorboard)
        update = start
        try:
            while update < config.updates:
                self.coordinator.progress = update
                try:
                    self.rollout(learner, update, config, spec.horizon)
                except Behind as behind:
                    update = self.rejoin(learner, update, behind, config, train_log)
                    continue
                if isinstance(learner, CLLearner):
                    try:
                        # the central learner waits up to the reset deadline for the slowest report
                        wait_s = config.reset_deadline_s + RETRY_MARGIN_S
                        learner.receive_advantages(self.central.advantages(update, learner.report(), wait_s))
                    except Behind as behind:  # the central learner went on without our report
                        update = self.rejoin(learner, update, behind, config, train_log)
                        continue
                learner.begin_update()
                for k in range(config.iterations):
                    received = self.peers.exchange(update * config.iterations + k, learner.outgoing(k),
                                                   learner.expected(k), rows, config.round_deadline_s)
                    learner.update_step(k, received)
                update += 1
                episode = update * config.batch
                train_log.append({"update": update, "episode": episode, **learner.end_update()})
                if config.checkpoint_due(update):
                    save_checkpoint(self.run_dir.checkpoint(self.me), update, episode, learner.state_dict())
        finally:
            train_log.close()

    def rejoin(self, learner: PPOLearner, update: int, behind: Behind, config: RunConfig, train_log: CsvLog) -> int:
        """Skip to the episode batch the env server says we can join; returns it. The missed updates get nan
        rows, and the last checkpoint due among them is written (our state, unchanged), so a later resume
        still finds an update every process holds."""
        join = min(behind.episode, config.updates)
        log.warning("agent %d: behind the env server (%s): %s", self.me, behind,
                    f"missed updates {update + 1}..{join}" if join > update else f"redoing update {update + 1}")
        for missed in range(update + 1, join + 1):
            train_log.append(missed_row(missed, missed * config.batch))
        due = [u for u in range(update + 1, join + 1) if config.checkpoint_due(u)]
        if due:
            learner.skip_to(due[-1])
            save_checkpoint(self.run_dir.checkpoint(self.me), due[-1], due[-1] * config.batch, learner.state_dict())
        learner.skip_to(join)
        return join

    def rollout(self, learner: PPOLearner, update: int, config: RunConfig, horizon: int) -> None:
        """One episode batch in lockstep with the env server: act on our own observations only."""
        retry_s = config.step_deadline_s + RETRY_MARGIN_S
        give_up_s = config.reset_deadline_s + retry_s
        reply = self.env.reset(update, retry_s, give_up_s)
        for t in range(1, horizon + 1):
            actions = learner.act(reply.body["obs"], reply.body["mask"])
            reply = self.env.step(update, t, np.asarray(actions, dtype=np.int64), retry_s, give_up_s)
            if reply.body["default_used"]:
                log.warning("agent %d: the env server used the default action for us at step %d", self.me, t)
            body = reply.body
            learner.record(body["reward"], body["terminated"], body["truncated"], body["obs"],
                           executed=not body["default_used"])

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

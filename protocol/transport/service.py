"""The lifecycle every server process shares (the env server, CL's central learner): bind a ROUTER,
register with the coordinator, build the service from the DIRECTORY, report READY (when resuming, with
the updates it holds checkpoints of), wait for START, run it from the update START names, report STOP
(finished, or the error), and release sockets and logs whatever happens."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Protocol

import zmq

from protocol.transport import sockets
from protocol.audit.outbox import Outbox
from protocol.audit.log import AuditLog
from protocol.transport.inbox import Inbox
from protocol.transport.keys import KeyRing, client_keys, server_keys
from protocol.logsetup import Terminated
from protocol.wire.messages import COORDINATOR_ID, Kind, Message
from protocol.transport.rendezvous import CoordinatorLink, Directory, RunStopped, Start
from protocol.run.rundir import RunDir


class Service(Protocol):
    def checkpoints(self) -> Iterable[int]:
        """Read this service's checkpoints (only when the run resumes) and return the updates they hold."""

    def run(self, start: Start) -> None:
        """Serve updates `start.update` .. the last, from the checkpoint of update `start.checkpoint`."""


@dataclass(frozen=True)
class Served:
    """What a service is built from: its socket and endpoint, its outbox and inbox, the run."""

    directory: Directory
    sock: zmq.Socket
    endpoint: str
    outbox: Outbox
    inbox: Inbox
    run_dir: RunDir
    log: logging.Logger
    link: CoordinatorLink  # its check_stop raises RunStopped once the coordinator stopped the run, and heartbeats


# what a server sends that is private to its addressee (agent i's own observation and reward): its audit log
# keeps only the digests, so no agent's reward lies in the shared logs/ directory in clear
PRIVATE_TO_ADDRESSEE = frozenset({Kind.OBS.value})


def serve(role: str, src: int, algo: str, build: Callable[[Served], Service], *, coordinator: str, bind: str,
          run_id: str, out: RunDir, log: logging.Logger, advertise: str | None = None,
          keys_dir: Path | None = None, register_deadline_s: float = 600.0,
          max_inbound_bytes: int = sockets.DEFAULT_MAX_MSG_SIZE) -> None:
    """Run one server process of `role` from registration to STOP (CURVE with the keys in `keys_dir`); a
    peer sending a message over `max_inbound_bytes` is disconnected."""
    ctx = zmq.Context()
    keys = KeyRing(keys_dir, src) if keys_dir is not None else None
    auth = keys.authenticator(ctx) if keys is not None else None
    sock = sockets.router(ctx, curve=server_keys(keys), max_msg_size=max_inbound_bytes,
                          rcv_hwm=sockets.SERVER_RCV_HWM)
    endpoint = sockets.bind(sock, bind)
    out.logs.mkdir(parents=True, exist_ok=True)
    inbox = Inbox(role, log, run=run_id, receipts=out.process_receipts(role))
    outbox = Outbox(role, algo, run_id, src,
                    AuditLog(out.process_audit(role), digest_only=PRIVATE_TO_ADDRESSEE))
    link = CoordinatorLink(ctx, coordinator, role, outbox, inbox, curve=client_keys(keys, COORDINATOR_ID))
    try:
        directory = link.register(advertise or endpoint, None, register_deadline_s)
        service = build(Served(directory, sock, endpoint, outbox, inbox, out, log, link))
        start = link.ready_and_wait_start(register_deadline_s,
                                          checkpoints=service.checkpoints() if directory.resume else ())
        log.info("START: %s serving %s to %d agents at %s%s", role, directory.config.env,
                 directory.config.agents, endpoint, f", resuming from update {start.update}" if start.update else "")
        try:
            service.run(start)
        except RunStopped:
            raise  # the coordinator knows: it told us
        except (Exception, Terminated) as err:
            link.stop(f"error: {err}")
            raise
        link.stop("finished")
    finally:
        inbox.write_summary(out.logs / f"{role}.received.json")
        inbox.close()
        link.close()
        sock.close()
        outbox.log.close()
        if auth is not None:
            auth.stop()
        ctx.term()


class AgentFacing:
    """Base of a service that agents talk to over its ROUTER: its socket, outbox, inbox and routes."""

    def __init__(self, served: Served):
        self.config = served.directory.config
        self.sock = served.sock
        self.endpoint = served.endpoint
        self.outbox = served.outbox
        self.inbox = served.inbox
        self.run_dir = served.run_dir
        self.link = served.link  # `link.progress`: the update being served, for the heartbeats
        self.while_waiting = served.link.check_stop  # raises if the coordinator stopped the run
        self.log = served.log
        self.routes = AgentRoutes(served.sock, served.inbox, self.config.agents, served.log)

    def send_to(self, agent: int, kind: Kind, body: dict, **where: int) -> bool:
        """Send to the connection `agent` is attached to; False (logged) if that connection is gone
        (ROUTER_MANDATORY): the agent may come back on another."""
        try:
            self.outbox.send(self.sock, kind, body, dest=f"agent:{agent}", endpoint=self.endpoint,
                             routing_id=self.routes[agent], **where)
        except zmq.ZMQError as err:
            self.log.warning("could not reply to agent %d: %s", agent, err)
            return False
        return True

    def send_join(self, agent: int, join: int, reason: str) -> bool:
        """Tell an agent whose message was stale (it lost track: paused, cut off, restarted) which episode
        batch or update it can still join (EPISODE_END), on the connection that message came on."""
        self.routes.attach(agent)
        self.log.warning("agent %d: %s", agent, reason)
        return self.send_to(agent, Kind.EPISODE_END, {"episode": join, "reason": reason}, step=0)


class AgentRoutes:
    """Valid agent messages off a ROUTER, and where to send each agent's replies.

    Identity is the registration, never the TCP connection (DESIGN.md section 6): an agent that
    reconnects (a pause past the heartbeat timeout, a network blip, a restarted process) comes back with a
    new routing id. The service `attach`es an agent to the connection of a message it actually uses, so a
    stale or refused message from a second connection never steals an agent's replies. Under CURVE the
    message's sender is proven by its key (the inbox checks the ZAP User-Id against `src`)."""

    def __init__(self, sock: zmq.Socket, inbox: Inbox, agents: int, log: logging.Logger):
        self.sock = sock
        self.inbox = inbox
        self.log = log
        self.agents = set(range(agents))
        self.routes: dict[int, bytes] = {}  # agent id -> routing id its replies go to
        self.came_from: dict[int, bytes] = {}  # agent id -> routing id of its latest valid message

    def receive(self, kinds: set) -> Message | None:
        """Read one message (the socket must be readable); None if it was dropped (logged, counted)."""
        parts, user_id = sockets.recv_authenticated(self.sock)
        if len(parts) != 2:
            return self.inbox.drop("invalid", f"{len(parts) - 1} frames (expected 1)")
        routing_id, frame = parts
        msg = self.inbox.accept(frame, kinds=kinds, src=self.agents,
                                origin=f"connection {sockets.routing_label(routing_id)}",
                                user_id=user_id)
        if msg is not None:
            self.came_from[msg.src] = routing_id
        return msg

    def attach(self, agent: int) -> None:
        """Send `agent`'s replies to the connection its latest valid message came on."""
        routing_id = self.came_from[agent]
        if self.routes.get(agent, routing_id) != routing_id:
            self.log.warning("agent %d re-attached from a new connection (%s)", agent,
                             sockets.routing_label(routing_id))
        self.routes[agent] = routing_id

    def __getitem__(self, agent: int) -> bytes:
        return self.routes[agent]

    def __contains__(self, agent: int) -> bool:
        return agent in self.routes

    def __iter__(self):
        return iter(sorted(self.routes))

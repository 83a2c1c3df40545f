"""`ss-coordinator`: rendezvous, directory and run lifecycle. Never on the data path.

Protocol (DESIGN.md section 6): every agent and the env server (and, for algo cl, the central learner)
sends HELLO (its endpoint, optionally its neighbour list); once all N agents and the servers are
registered, each gets a DIRECTORY (the resolved run config, the world spec, its neighbours and their
endpoints, the env server's endpoint, and the central learner's for cl);
each reports READY once its links are up (when resuming, with the updates it holds checkpoints of); then
START is broadcast with the newest update every process holds (protocol/run/checkpoints.py), or 0. After
START the coordinator only watches (HEARTBEAT, STOP); the run does not depend on it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import zmq

from protocol.run.topology import resolve_neighbors
from envserver.worlds import world_spec
from protocol.transport import sockets
from protocol.audit.outbox import Outbox
from protocol.audit.log import AuditLog
from protocol.run.checkpoints import resume_point
from protocol.run.config import RunConfig, write_toml
from protocol.transport.inbox import Inbox
from protocol.transport.keys import KeyRing, server_keys
from protocol.wire.messages import CENTRAL_LEARNER_ID, COORDINATOR_ID, ENVSERVER_ID, Kind
from protocol.run.rundir import RunDir
from protocol.wire.spec import WorldSpec

log = logging.getLogger("ss-coordinator")

SILENT_AFTER_S = 15.0  # a member not heard from this long after START is reported (heartbeats come every 2 s)


@dataclass
class Member:
    """A registered process: its routing id on our ROUTER, its endpoint, its claimed neighbours."""

    routing_id: bytes
    endpoint: str
    neighbors: tuple[int, ...] | None = None
    ready: bool = False
    checkpoints: tuple[int, ...] = ()  # updates it can resume from (READY)
    stopped: str | None = None
    started: bool = False  # START sent to this registration
    progress: int = 0  # the update it reported last (HEARTBEAT)
    last_seen: float = field(default_factory=time.monotonic)
    silent: bool = False  # reported silent, not heard from since


class RegistrationError(RuntimeError):
    """The processes that registered cannot form the configured run."""


class Coordinator:
    """Holds the run config, the directory and the topology; drives HELLO -> DIRECTORY -> READY -> START."""

    def __init__(self, config: RunConfig, run_id: str, bind: str, run_dir: RunDir, resume: bool = True,
                 keys: KeyRing | None = None):
        self.config = config
        self.resume = resume
        self.run_id = run_id
        self.run_dir = run_dir
        self.ctx = zmq.Context()
        self.auth = keys.authenticator(self.ctx) if keys is not None else None  # CURVE: only the run's keys
        self.sock = sockets.router(self.ctx, curve=server_keys(keys), max_msg_size=sockets.CONTROL_MAX_MSG_SIZE,
                                   rcv_hwm=sockets.SERVER_RCV_HWM)
        self.sock.bind(bind)
        self.endpoint = bind
        self.inbox = Inbox("coordinator", log, run=run_id, receipts=run_dir.process_receipts("coordinator"))
        self.outbox = Outbox("coordinator", config.algo, run_id, COORDINATOR_ID,
                             AuditLog(run_dir.process_audit("coordinator"), mode=config.audit))
        self.members: dict[int, Member] = {}
        self.directed = False  # DIRECTORY sent to everyone
        self.started = False
        self._spec: WorldSpec | None = None
        # the non-agent processes the run needs, by sender id
        self.servers = {ENVSERVER_ID: "envserver", **({CENTRAL_LEARNER_ID: "learner"} if config.algorithm.central_learner else {})}

    @property
    def expected(self) -> int:
        """How many processes must register: N agents and the servers."""
        return self.config.agents + len(self.servers)

    # ---- message handling -------------------------------------------------------------------

    def poll(self, timeout_ms: int) -> None:
        """Handle every message that arrives within `timeout_ms`."""
        if not self.sock.poll(timeout_ms):
            return
        while True:
            if not self.sock.poll(0):
                return
            parts, user_id = sockets.recv_authenticated(self.sock)
            if len(parts) != 2:
                self.inbox.drop("invalid", f"{len(parts) - 1} frames (expected 1)")
                continue
            self.handle(*parts, user_id=user_id)

    def handle(self, routing_id: bytes, frame: bytes, user_id: str | None = None) -> None:
        expected = {Kind.HELLO, Kind.READY, Kind.STOP, Kind.HEARTBEAT}
        ids = set(range(self.config.agents)) | set(self.servers)
        msg = self.inbox.accept(frame, kinds=expected, src=ids, origin=f"connection {sockets.routing_label(routing_id)}",
                                user_id=user_id)
        if msg is None:
            return
        if msg.kind is Kind.HELLO:
            self.register(routing_id, msg.src, msg.body)
            return
        member = self.members.get(msg.src)
        if member is None and msg.kind is Kind.HEARTBEAT and "endpoint" in msg.body:
            member = self.adopt(routing_id, msg.src, msg.body)
        if member is None:
            self.inbox.drop("unknown_sender", f"{msg.kind.value} from src {msg.src} before/without HELLO")
            return
        if member.routing_id != routing_id:  # identity is the registration, not the connection
            log.info("%s re-attached from a new connection", name(msg.src))
            member.routing_id = routing_id
        member.last_seen = time.monotonic()
        if member.silent:
            log.info("%s is back (update %d)", name(msg.src), msg.body.get("update", member.progress))
            member.silent = False
        if msg.kind is Kind.HEARTBEAT:
            member.progress = msg.body.get("update", member.progress)
        elif msg.kind is Kind.READY:
            member.ready = True
            member.checkpoints = tuple(msg.body.get("checkpoints", ()))
            if self.started:
                self.start_rejoining(msg.src, member)
        elif msg.kind is Kind.STOP:
            member.stopped = msg.body["reason"]
            log.info("%s stopped: %s", name(msg.src), member.stopped)
            if member.stopped != "finished" and self.started:
                self.stop_everyone(f"{name(msg.src)} failed ({member.stopped})")

    def register(self, routing_id: bytes, src: int, body: dict) -> None:
        """HELLO: a new member; the same member again (it resends HELLO until its DIRECTORY comes, or it was
        restarted) is re-attached, and gets its DIRECTORY once the directories are out."""
        role = self.servers.get(src, "agent")
        if body["role"] != role:
            self.inbox.drop("invalid", f"HELLO from src {src} claims role {body['role']}")
            return
        claimed = tuple(body["neighbors"]) if "neighbors" in body else None
        old = self.members.get(src)
        if old is not None and old.stopped == "finished":
            self.inbox.drop("duplicate", f"HELLO from {name(src)}, which has finished")
            return
        if old is not None and self.directed and body["endpoint"] != old.endpoint:
            # its peers dial the registered endpoint: a restarted process must bind it again
            self.inbox.drop("duplicate", f"HELLO for {name(src)} from {body['endpoint']}, but it is registered at "
                                         f"{old.endpoint}")
            return
        self.members[src] = Member(routing_id, body["endpoint"], claimed if old is None else old.neighbors,
                                   progress=0 if old is None else old.progress)
        if old is None:
            log.info("registered %s at %s (%d/%d)", name(src), body["endpoint"], len(self.members), self.expected)
        if self.directed:
            if self.started and not self.knows_neighbours_of(src):
                log.info("%s rejoins, but not every process it needs has been heard from yet", name(src))
                return  # it sends HELLO again in a few seconds
            if self.started:
                log.warning("%s (re)joins the running run from %s", name(src), body["endpoint"])
            self.send(self.members[src], Kind.DIRECTORY, self.directory_for(src, rejoin=self.started))

    def adopt(self, routing_id: bytes, src: int, body: dict) -> Member:
        """A HEARTBEAT from a process we never registered: we were restarted after START, and it runs. It
        becomes a member again; the run is started."""
        if not self.started:
            log.warning("restarted after START: rebuilding membership from heartbeats")
            self.started = self.directed = True
        member = Member(routing_id, body["endpoint"], ready=True, started=True, progress=body.get("update", 0))
        self.members[src] = member
        log.info("%s is running at %s (update %d)", name(src), body["endpoint"], member.progress)
        return member

    def start_rejoining(self, src: int, member: Member) -> None:
        """START for a process that (re)joined after START: an agent continues from its newest checkpoint (the
        env server then tells it which batch to join); a server restores its newest checkpoint and serves from
        the update the run is at."""
        if member.started:
            return
        held = max(member.checkpoints, default=0)
        update = held if src >= 0 else max([held, *(m.progress for m in self.members.values())])
        member.started = True
        log.warning("START for %s: from update %d (its checkpoint: %d)", name(src), update, held)
        self.send(member, Kind.START, {"update": update, "checkpoint": held})

    def watch(self) -> None:
        """After START: say so, once, when a member has been silent for SILENT_AFTER_S."""
        now = time.monotonic()
        for src, member in self.members.items():
            if member.stopped is None and not member.silent and now - member.last_seen > SILENT_AFTER_S:
                member.silent = True
                log.warning("%s has been silent for %.0fs (last at update %d)", name(src),
                            now - member.last_seen, member.progress)

    # ---- lifecycle --------------------------------------------------------------------------

    def wait_for(self, condition, what: str, deadline_s: float) -> None:
        """Serve messages until `condition()` holds; RegistrationError after the deadline."""
        end = time.monotonic() + deadline_s
        while not condition():
            if time.monotonic() > end:
                raise RegistrationError(f"timed out after {deadline_s:.0f}s waiting for {what}")
            self.poll(200)

    def resolve_topology(self) -> None:
        """Neighbour lists given with `ss-agent --neighbors` become the run's static graph."""
        claims = {i: m.neighbors for i, m in self.members.items() if i >= 0 and m.neighbors is not None}
        if not claims:
            return
        missing = sorted(set(range(self.config.agents)) - set(claims))
        if missing:
            raise RegistrationError(f"agents {missing} gave no --neighbors while others did")
        config = dataclasses.replace(self.config, neighbors=claims)
        try:
            config.validate()
        except ValueError as err:
            raise RegistrationError(f"the --neighbors of the agents do not form a graph: {err}") from err
        self.config = config

    def directory_for(self, src: int, rejoin: bool = False) -> dict:
        """The DIRECTORY body of member `src`: the run config, the world spec, its neighbours' endpoints."""
        spec = self.spec()
        mine = resolve_neighbors(self.config, spec).get(src, ())
        learner = self.members.get(CENTRAL_LEARNER_ID)
        return {
            "config": {**self.config.to_dict(), "spec": spec.to_dict()},
            "agents": list(range(self.config.agents)),
            "neighbors": list(mine),
            "peers": {str(j): self.members[j].endpoint for j in mine},
            "envserver": self.members[ENVSERVER_ID].endpoint,
            **({"learner": learner.endpoint} if learner is not None else {}),
            "resume": self.resume or rejoin,
        }

    def knows_neighbours_of(self, src: int) -> bool:
        """Whether we know the endpoints a DIRECTORY for `src` names (a restarted coordinator learns them)."""
        return {ENVSERVER_ID, *resolve_neighbors(self.config, self.spec()).get(src, ())} <= self.members.keys()

    def spec(self) -> WorldSpec:
        if self._spec is None:
            self._spec = world_spec(self.config.env, self.config.agents, self.config.batch)
        return self._spec

    def send_directories(self) -> None:
        self.directed = True
        for src, member in self.members.items():
            self.send(member, Kind.DIRECTORY, self.directory_for(src))

    def send(self, member: Member, kind: Kind, body: dict) -> None:
        src = next(i for i, m in self.members.items() if m is member)
        self.outbox.send(self.sock, kind, body, dest=self.servers.get(src, f"agent:{src}"), endpoint=self.endpoint,
                         routing_id=member.routing_id)

    def stop_everyone(self, reason: str) -> None:
        """Tell every process still running to stop, so nobody waits out a deadline for a dead peer."""
        log.error("stopping the run: %s", reason)
        for member in self.members.values():
            if member.stopped is None:
                member.stopped = f"stopped: {reason}"
                try:
                    self.send(member, Kind.STOP, {"reason": reason})
                except zmq.ZMQError as err:  # its connection is gone already
                    log.warning("could not send STOP: %s", err)

    def run(self, register_deadline_s: float = 600.0) -> int:
        """The whole lifecycle; returns a process exit code."""
        n = self.expected
        try:
            self.wait_for(lambda: len(self.members) == n or self.started, f"{n} processes to register",
                          register_deadline_s)
            if self.started:  # restarted after START: heartbeats told us the run is going
                self.serve_running()
                return self.outcome()
            self.resolve_topology()
            write_toml(self.config, self.run_dir.config)
            self.send_directories()
            self.wait_for(lambda: all(m.ready for m in self.members.values()), "READY from all",
                          register_deadline_s)
            update = self.resume_point()
        except RegistrationError as err:
            self.stop_everyone(str(err))
            return 1
        for member in self.members.values():
            self.send(member, Kind.START, {"update": update})
            member.started = True
        self.started = True
        log.info("START sent to %d processes%s", n, f" (resuming from update {update})" if update else "")
        self.serve_running()
        return self.outcome()

    def serve_running(self) -> None:
        """After START: watch heartbeats, take rejoining processes, until every member has stopped."""
        while len(self.members) < self.expected or not all(m.stopped for m in self.members.values()):
            self.poll(1000)
            self.watch()

    def outcome(self) -> int:
        failed = {name(i): m.stopped for i, m in self.members.items() if m.stopped != "finished"}
        if failed:
            log.error("run ended with failures: %s", failed)
            return 1
        log.info("all processes finished")
        return 0

    def resume_point(self) -> int:
        """The update every process continues from: the newest one all hold checkpoints of, else 0."""
        try:
            return resume_point({name(i): set(m.checkpoints) for i, m in sorted(self.members.items())})
        except ValueError as err:
            raise RegistrationError(f"{err}; start over with --no-resume, or into another --out") from err

    def close(self) -> None:
        self.sock.close()
        self.outbox.log.close()
        self.inbox.write_summary(self.run_dir.logs / "coordinator.received.json")
        self.inbox.close()
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()


def name(src: int) -> str:
    """Human label of a sender id."""
    return {ENVSERVER_ID: "envserver", CENTRAL_LEARNER_ID: "central learner"}.get(src, f"agent {src}")

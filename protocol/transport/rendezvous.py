"""A process's control channel to the coordinator: HELLO -> DIRECTORY -> READY -> START, then STOP.

Used by agents and the env server alike. Every wait has a deadline and ends in a clear error.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Iterable

import zmq

from protocol.transport import sockets
from protocol.audit.outbox import Outbox
from protocol.run.config import RunConfig
from protocol.transport.inbox import Inbox
from protocol.transport.keys import CurveKeys
from protocol.wire.messages import COORDINATOR_ID, Kind, Message
from protocol.wire.spec import WorldSpec


log = logging.getLogger("ss-rendezvous")


class CoordinatorUnavailable(RuntimeError):
    """The coordinator did not answer in time."""


class RunStopped(RuntimeError):
    """The coordinator stopped the run (another process failed)."""


@dataclass(frozen=True)
class Directory:
    """What the coordinator told this process: the run, its neighbours and where everyone is."""

    config: RunConfig
    spec: WorldSpec
    agents: tuple[int, ...]
    neighbors: tuple[int, ...]
    peers: dict[int, str]
    envserver: str
    learner: str | None = None  # the central learner's endpoint (algo cl)
    resume: bool = False  # continue from checkpoints: report them in READY

    @classmethod
    def from_message(cls, msg: Message) -> "Directory":
        config_map = dict(msg.body["config"])
        spec = WorldSpec.from_dict(config_map.pop("spec"))
        return cls(
            config=RunConfig.from_dict(config_map),
            spec=spec,
            agents=tuple(msg.body["agents"]),
            neighbors=tuple(msg.body["neighbors"]),
            peers={int(j): ep for j, ep in msg.body["peers"].items()},
            envserver=msg.body["envserver"],
            learner=msg.body.get("learner"),
            resume=msg.body.get("resume", False),
        )


RESEND_EVERY_S = 5.0  # HELLO and READY are repeated this often until answered (a coordinator may restart)
HEARTBEAT_EVERY_S = 2.0  # after START, while waiting on anything


@dataclass(frozen=True)
class Start:
    """What START says: the update every process continues from, and the checkpoint to load for it (they
    differ only for a process that rejoins a running run: the env server restores its newest world state)."""

    update: int
    checkpoint: int


class CoordinatorLink:
    """DEALER to the coordinator; all sends go through the process's Outbox (the audit choke point).

    After START it sends a HEARTBEAT (role, the update it is at, its endpoint) every HEARTBEAT_EVERY_S from
    `check_stop`, which every wait loop calls: the coordinator sees who is alive, and a restarted coordinator
    rebuilds its membership from them. The run never waits for the coordinator after START."""

    def __init__(self, ctx: zmq.Context, endpoint: str, role: str, outbox: Outbox, inbox: Inbox,
                 curve: CurveKeys | None = None):
        self.endpoint = endpoint
        self.role = role
        self.outbox = outbox
        self.inbox = inbox
        self.sock = sockets.dealer(ctx, curve=curve)
        self.sock.connect(endpoint)
        self.advertised: str | None = None  # our endpoint, as registered
        self.progress = 0  # the update this process is at (heartbeats report it)
        self.next_beat: float | None = None  # None until START

    def send(self, kind: Kind, body: dict[str, Any], deadline_s: float = 30.0) -> None:
        """Send once the connection is up (IMMEDIATE=1 queues nothing before): error after the deadline."""
        if not self.sock.poll(int(deadline_s * 1000), zmq.POLLOUT):
            raise CoordinatorUnavailable(f"no coordinator at {self.endpoint} after {deadline_s:.0f}s")
        self.outbox.send(self.sock, kind, body, dest="coordinator", endpoint=self.endpoint)

    def receive(self, kind: Kind, deadline_s: float, resend: tuple[Kind, dict[str, Any]] | None = None) -> Message:
        """The next valid message of `kind` from the coordinator (others are logged and dropped);
        RunStopped if the coordinator stops the run instead. `resend` is sent again every RESEND_EVERY_S
        until the answer comes, saying on the console that we are still waiting."""
        end = time.monotonic() + deadline_s
        next_send = time.monotonic() + RESEND_EVERY_S
        while (left := end - time.monotonic()) > 0:
            if resend is not None and time.monotonic() >= next_send:
                log.warning("%s: waiting for the coordinator at %s (%s; giving up after %.0fs)", self.role,
                            self.endpoint, f"no {kind.value} yet", deadline_s)
                self.send(*resend, deadline_s=left)
                next_send = time.monotonic() + RESEND_EVERY_S
            if self.sock.poll(int(min(left, 0.2) * 1000)):
                frame = self.sock.recv()
                msg = self.inbox.accept(frame, kinds={kind, Kind.STOP}, src=COORDINATOR_ID, origin=self.endpoint)
                if msg is not None and msg.kind is Kind.STOP:
                    raise RunStopped(f"the coordinator stopped the run: {msg.body['reason']}")
                if msg is not None:
                    return msg
        raise CoordinatorUnavailable(f"no {kind.value} from the coordinator at {self.endpoint} "
                                     f"within {deadline_s:.0f}s: is it running, and is --coordinator right?")

    def register(self, endpoint: str, neighbors: tuple[int, ...] | None, deadline_s: float) -> Directory:
        """HELLO, then wait for the DIRECTORY."""
        body: dict[str, Any] = {"role": self.role, "endpoint": endpoint}
        if neighbors is not None:
            body["neighbors"] = list(neighbors)
        self.advertised = endpoint
        self.send(Kind.HELLO, body, deadline_s)
        return Directory.from_message(self.receive(Kind.DIRECTORY, deadline_s, resend=(Kind.HELLO, body)))

    def ready_and_wait_start(self, deadline_s: float, checkpoints: Iterable[int] = ()) -> Start:
        """Report READY (with the updates we hold checkpoints of, when resuming), block until START;
        returns where START says to continue from (update 0: from the beginning)."""
        body: dict[str, Any] = {"role": self.role}
        if held := sorted(checkpoints):
            body["checkpoints"] = held
        self.send(Kind.READY, body, deadline_s)
        start = self.receive(Kind.START, deadline_s, resend=(Kind.READY, body)).body
        update = start.get("update", 0)
        self.progress = update
        self.next_beat = time.monotonic() + HEARTBEAT_EVERY_S
        return Start(update, start.get("checkpoint", update))

    def check_stop(self) -> None:
        """Raise RunStopped if the coordinator has broadcast STOP, and heartbeat when one is due (never blocks;
        call it while waiting)."""
        while self.sock.poll(0):
            msg = self.inbox.accept(self.sock.recv(), kinds={Kind.STOP}, src=COORDINATOR_ID, origin=self.endpoint)
            if msg is not None:
                raise RunStopped(f"the coordinator stopped the run: {msg.body['reason']}")
        if self.next_beat is not None and time.monotonic() >= self.next_beat:
            self.next_beat = time.monotonic() + HEARTBEAT_EVERY_S
            body: dict[str, Any] = {"role": self.role, "update": self.progress}
            if self.advertised is not None:
                body["endpoint"] = self.advertised
            try:
                self.outbox.send(self.sock, Kind.HEARTBEAT, body, dest="coordinator", endpoint=self.endpoint,
                                 flags=zmq.NOBLOCK)
            except zmq.Again:  # the coordinator is gone and our queue to it is full: the run goes on
                pass

    def stop(self, reason: str) -> None:
        """Tell the coordinator we are done (best effort: after START the run must not need it)."""
        try:
            self.send(Kind.STOP, {"reason": reason}, deadline_s=2.0)
        except CoordinatorUnavailable:
            pass

    def close(self) -> None:
        self.sock.close()

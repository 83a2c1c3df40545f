"""The send choke point: every frame that leaves any process goes through `Outbox.send` (DESIGN.md section 7).

`Outbox.send` (a) refuses a kind the sender's role and algorithm may not send, (b) appends the exact
wire frames to the audit log, and (c) sends them. `tests/test_no_stray_sends.py` checks that no other
module calls a socket's send methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import zmq

from protocol.wire.algorithms import ALGORITHMS
from protocol.audit.log import AuditLog
from protocol.wire.codec import encode
from protocol.wire.messages import Kind, Message

# ---- who may send what -------------------------------------------------------------------------


@dataclass(frozen=True)
class SendPolicy:
    """What one sender may send: its kinds, and the kinds whose private fields it may carry."""

    kinds: frozenset[Kind]
    private: frozenset[Kind] = frozenset()  # e.g. the env server's OBS holds the recipient's own reward


_PROCESS_CONTROL = frozenset({Kind.HELLO, Kind.READY, Kind.STOP, Kind.HEARTBEAT})
_AGENT_BASE = frozenset({Kind.RESET, Kind.STEP}) | _PROCESS_CONTROL

# Agents, by algorithm (DESIGN.md section 4; protocol/wire/algorithms.py): what each may send, and which kinds may
# carry private fields.
AGENT_POLICIES: dict[str, SendPolicy] = {name: SendPolicy(_AGENT_BASE | a.sends, a.private)
                                         for name, a in ALGORITHMS.items()}

# The other processes, by role; they send the same kinds whatever the algorithm.
PROCESS_POLICIES: dict[str, SendPolicy] = {
    "envserver": SendPolicy(frozenset({Kind.OBS, Kind.EPISODE_END}) | _PROCESS_CONTROL,
                            private=frozenset({Kind.OBS})),
    "coordinator": SendPolicy(frozenset({Kind.DIRECTORY, Kind.START, Kind.STOP})),
    # CL's central learner: the team advantage back to each agent (EPISODE_END to one whose report came late)
    "learner": SendPolicy(frozenset({Kind.ADV, Kind.EPISODE_END}) | _PROCESS_CONTROL, private=frozenset({Kind.ADV})),
}


def send_policy(role: str, algo: str) -> SendPolicy:
    """The policy of a sender; ValueError for an unknown role or algorithm."""
    if algo not in AGENT_POLICIES:
        raise ValueError(f"unknown algo {algo!r}; choose one of {sorted(AGENT_POLICIES)}")
    if role == "agent":
        return AGENT_POLICIES[algo]
    if role not in PROCESS_POLICIES:
        raise ValueError(f"unknown role {role!r}; choose one of {['agent', *sorted(PROCESS_POLICIES)]}")
    return PROCESS_POLICIES[role]


def allowed_kinds(role: str, algo: str) -> frozenset[Kind]:
    """The kinds a sender of this role may send under this algorithm."""
    return send_policy(role, algo).kinds


def sender_label(role: str, src: int) -> str:
    """How messages name a sender: "agent 3", "envserver"."""
    return f"agent {src}" if role == "agent" else role


class KindNotAllowed(PermissionError):
    """Raised by `Outbox.send` for a kind the sender may not send; nothing was sent or logged."""

    def __init__(self, role: str, src: int, algo: str, kind: Kind):
        super().__init__(f"{sender_label(role, src)} (algo {algo}) may not send {kind.value}")
        self.kind = kind


# ---- the outbox --------------------------------------------------------------------------------


@dataclass
class Tally:
    """Messages and wire bytes sent of one kind."""

    messages: int = 0
    bytes: int = 0


@dataclass
class Outbox:
    """The only way a process sends: one per process, shared by all its sockets (single-threaded).

    `seq` continues from the audit log when one is reopened, so a restarted sender never reuses a number.
    The record is written before the frames are sent: if the send then fails, the log lists a message
    that may not have arrived, so it over-reports and never under-reports what left the process.
    """

    role: str
    algo: str
    run: str
    src: int
    log: AuditLog | None = None
    counts: dict[Kind, Tally] = field(default_factory=dict, init=False)
    _policy: SendPolicy = field(init=False, repr=False)
    _next_seq: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._policy = send_policy(self.role, self.algo)
        last = self.log.last_seq if self.log is not None else None
        self._next_seq = 0 if last is None else last + 1

    def send(
        self,
        sock: zmq.Socket,
        kind: Kind,
        body: dict[str, Any],
        *,
        dest: str,
        endpoint: str,
        topic: bytes | None = None,
        routing_id: bytes | None = None,
        round: int | None = None,
        step: int | None = None,
        flags: int = 0,
    ) -> Message:
        """Check, record and send one message; returns it as sent.

        Wire frames: [topic, payload] when `topic` is given (PUB/XPUB), [routing_id, payload] on a
        ROUTER (the routing id is consumed by the ROUTER and not recorded; `dest` names the peer),
        otherwise [payload] (DEALER). `dest` is a human label: "agent:4", "envserver", "coordinator",
        "subscribers:dist/3/". Raises KindNotAllowed (nothing sent, nothing logged).
        """
        if kind not in self._policy.kinds:
            raise KindNotAllowed(self.role, self.src, self.algo, kind)
        if topic is not None and routing_id is not None:
            raise ValueError("a message has either a topic (PUB) or a routing id (ROUTER), not both")
        msg = Message(kind=kind, run=self.run, src=self.src, seq=self._next_seq, body=body,
                      round=round, step=step)
        payload = encode(msg)
        frames = [payload] if topic is None else [topic, payload]
        if self.log is not None:
            self.log.append(dest=dest, endpoint=endpoint, topic=topic, kind=kind.value, seq=msg.seq,
                            round=round, step=step, frames=frames)
        self._next_seq += 1
        sock.send_multipart(frames if routing_id is None else [routing_id, payload], flags=flags)
        tally = self.counts.setdefault(kind, Tally())
        tally.messages += 1
        tally.bytes += sum(len(f) for f in frames)
        return msg

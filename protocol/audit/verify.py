"""Verify an audit log: the hash chain, the frames, and that everything sent was allowed (DESIGN.md section 7).

Checks, naming the record of every failure: each record's hash covers its bytes; each record points
at its predecessor (so an edit, deletion, insertion or reordering breaks the chain) and is numbered in
order; recorded frames match their lengths and SHA-256 digests; the kind is allowed for the sender's
role and algorithm; and, when frames are recorded, the payload decodes with `protocol.wire.codec.decode`,
agrees with the record's envelope, comes from one sender and one run at a time (a process started again
into the same directory, e.g. a resumed cluster, appends a new run, which must begin with the message that
opens every session: HELLO, or for the coordinator its first DIRECTORY),
goes out on the topic its kind
and sender imply, and carries no private field (reward, observation, value, parameter) the sender may
not send. A torn tail is reported, not failed. Deleting the *last* records cannot be seen from the log
alone: compare `VerifyResult.head` and `.records` with a copy kept elsewhere to detect truncation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from protocol.audit.outbox import SendPolicy, send_policy
from protocol.audit.log import GENESIS, LogFormatError, Record, TornTail, frame_digest, is_torn, iter_lines, \
    parse_record, topic_label
from protocol.wire.codec import ProtocolError, decode
from protocol.wire.messages import CENTRAL_LEARNER_ID, COORDINATOR_ID, ENVSERVER_ID, PRIVATE_FIELDS, Kind, Message
from protocol.wire.topics import parse_topic

# What a process sends first in a run: every run appended to a log must begin with one of these.
SESSION_OPENERS = frozenset({Kind.HELLO, Kind.DIRECTORY})

# The fixed sender ids of the non-agent roles (agents are >= 0).
ROLE_SRC = {"envserver": ENVSERVER_ID, "coordinator": COORDINATOR_ID, "learner": CENTRAL_LEARNER_ID}


@dataclass(frozen=True)
class Failure:
    """One failed check of one record."""

    index: int
    reason: str

    def __str__(self) -> str:
        return f"record {self.index}: {self.reason}"


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of `verify_log`; `ok` iff no failure. `head` is the last record's hash."""

    path: Path
    records: int
    head: str
    torn: TornTail | None
    failures: tuple[Failure, ...]

    @property
    def ok(self) -> bool:
        return not self.failures


class _Sender:
    """The sender identity every decoded payload of one log must share."""

    def __init__(self, role: str, src: int | None):
        self.role = role
        self.src = ROLE_SRC.get(role, src)
        self.run: str | None = None

    def check(self, msg: Message) -> list[str]:
        problems = []
        if self.role == "agent" and msg.src < 0:
            problems.append(f"src {msg.src} is not an agent id")
        if self.src is None:
            self.src = msg.src
        elif msg.src != self.src:
            problems.append(f"src {msg.src}, but this log belongs to sender {self.src}")
        if self.run is None or (msg.run != self.run and msg.kind in SESSION_OPENERS):
            self.run = msg.run
        elif msg.run != self.run:
            problems.append(f"run {msg.run!r}, but earlier records are of run {self.run!r} (a new run begins "
                            "with HELLO, or the coordinator's DIRECTORY)")
        return problems


def _frame_problems(record: Record) -> list[str]:
    """Lengths, digests and (when recorded) the frames themselves agree."""
    if len(record.digests) != len(record.lengths) or len(record.lengths) != 1 + (record.topic is not None):
        return [f"{len(record.lengths)} lengths / {len(record.digests)} digests for "
                f"{'a topic and a payload' if record.topic is not None else 'one payload'}"]
    if record.frames is None:
        return []
    if len(record.frames) != len(record.lengths):
        return [f"{len(record.frames)} frames recorded but {len(record.lengths)} lengths"]
    problems = [f"frame {k}: {len(f)} bytes but recorded length {n}"
                for k, (f, n) in enumerate(zip(record.frames, record.lengths)) if len(f) != n]
    problems += [f"frame {k}: SHA-256 does not match" for k, (f, d) in enumerate(zip(record.frames, record.digests))
                 if frame_digest(f) != d]
    if record.topic is not None and topic_label(record.frames[0]) != record.topic:
        problems.append(f"topic field {record.topic!r} is not the topic frame {record.frames[0]!r}")
    return problems


def _payload_problems(record: Record, policy: SendPolicy, sender: _Sender) -> list[str]:
    """Decode the payload and check it against the record, the sender and the policy."""
    try:
        msg = decode(record.frames[-1])
    except ProtocolError as err:
        return [f"payload does not decode: {err.reason}"]
    problems = sender.check(msg)
    envelope = (msg.kind.value, msg.seq, msg.round, msg.step)
    if envelope != (record.kind, record.seq, record.round, record.step):
        problems.append(f"payload envelope (kind, seq, round, step) = {envelope} differs from the record's "
                        f"{(record.kind, record.seq, record.round, record.step)}")
    private = sorted(PRIVATE_FIELDS.get(msg.kind, frozenset()) & msg.body.keys())
    if private and msg.kind not in policy.private:
        problems.append(f"carries private field(s) {private} in {msg.kind.value}")
    if "to" in msg.body and msg.kind is not Kind.SUGG and record.dest != f"agent:{msg.body['to']}":
        problems.append(f"{msg.kind.value} for agent {msg.body['to']} was sent to {record.dest}")
    if record.topic is not None:
        problems += _topic_problems(record.frames[0], msg)
    return problems


def _topic_problems(topic: bytes, msg: Message) -> list[str]:
    """A published message goes out on the topic of its own kind and sender (and, for SUGG, recipient)."""
    try:
        kind, src, dst = parse_topic(topic)
    except ProtocolError as err:
        return [f"not a valid topic: {err.reason}"]
    if (kind, src, dst) != (msg.kind.value.lower(), msg.src, msg.body.get("to")):
        return [f"topic {topic!r} does not match a {msg.kind.value} from sender {msg.src}"
                + (f" to {msg.body['to']}" if "to" in msg.body else "")]
    return []


def _record_problems(record: Record, policy: SendPolicy, sender: _Sender) -> list[str]:
    problems = _frame_problems(record)
    intact = record.frames is not None and not problems
    if record.kind not in {k.value for k in policy.kinds}:
        problems.append(f"kind {record.kind} is not allowed")
    if intact:
        problems += _payload_problems(record, policy, sender)
    return problems


def verify_log(path: str | Path, role: str, algo: str, src: int | None = None) -> VerifyResult:
    """Check every record of the log at `path` written by a sender of `role` under `algo`.

    `src`, when given, is the agent id the log must belong to (other roles have fixed ids).
    """
    policy = send_policy(role, algo)
    sender = _Sender(role, src)
    failures: list[Failure] = []
    expected_prev: str | None = GENESIS  # None right after a damaged line: its hash is unknown
    count, head, torn = 0, GENESIS, None
    for line, terminated in iter_lines(path):
        if not terminated and is_torn(line):
            torn = TornTail(records=count, size=len(line))
            break
        try:
            record = parse_record(count, line)
        except LogFormatError as err:
            failures.append(Failure(count, err.reason))
            expected_prev, count = None, count + 1
            continue
        if record.actual_hash != record.hash:
            failures.append(Failure(count, "hash does not match the record's bytes (record edited)"))
        if expected_prev is not None and record.prev != expected_prev:
            failures.append(Failure(count, "chain broken: 'prev' is not the previous record's hash "
                                           "(a record was deleted, inserted, reordered or edited)"))
        if record.index != count:
            failures.append(Failure(count, f"numbered {record.index}, expected {count}"))
        failures += [Failure(count, p) for p in _record_problems(record, policy, sender)]
        expected_prev = head = record.hash
        count += 1
    return VerifyResult(Path(path), count, head, torn, tuple(failures))

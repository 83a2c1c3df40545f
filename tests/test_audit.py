"""The send choke point and the audit log: refusal, exact capture, and tamper evidence (DESIGN.md section 7)."""

from __future__ import annotations

import base64
import json
import zlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.transport import sockets
from protocol.audit.outbox import KindNotAllowed, Outbox, Tally, allowed_kinds
from protocol.audit.log import AuditLog, Record, TornTail, iter_records, parse_record
from protocol.audit.verify import verify_log
from protocol.wire.codec import ProtocolError, encode
from protocol.wire.messages import ENVSERVER_ID, Kind, Message
from protocol.wire.topics import dist_topic, sugg_topic

RUN = "run-test"
TIMEOUT_MS = 5000


def dist_body(rows: int = 2) -> dict:
    probs = np.tile(np.array([0.25, 0.75], np.float32), (rows, 1))
    return {"probs": probs, "actions": np.arange(rows, dtype=np.int64) % 2,
            "behaviour": np.full(rows, 0.5, np.float32)}


def sugg_body(to: int, rows: int = 2) -> dict:
    return {"to": to, "probs": np.full((rows, 2), 0.5, np.float32)}


def recv(sock: zmq.Socket) -> list[bytes]:
    """The next message on `sock`; fails the test if none arrives within TIMEOUT_MS."""
    assert sock.poll(TIMEOUT_MS), "expected a message, none arrived"
    return sock.recv_multipart()


@dataclass
class Loopback:
    """Real sockets on 127.0.0.1: an agent's DEALER to a ROUTER, and an XPUB with one SUB."""

    router: zmq.Socket
    router_ep: str
    dealer: zmq.Socket
    xpub: zmq.Socket
    xpub_ep: str
    sub: zmq.Socket

    def subscribe(self, topic: bytes) -> None:
        """Subscribe and wait until the publisher has seen the subscription (no slow joiner)."""
        self.sub.subscribe(topic)
        assert recv(self.xpub) == [b"\x01" + topic]


@pytest.fixture
def net() -> Iterator[Loopback]:
    ctx = zmq.Context()
    router, xpub = sockets.router(ctx), sockets.xpub(ctx)
    router_ep, xpub_ep = sockets.bind_random(router), sockets.bind_random(xpub)
    dealer, sub = sockets.dealer(ctx, routing_id=b"agent-3"), sockets.sub(ctx)
    dealer.connect(router_ep)
    sub.connect(xpub_ep)
    yield Loopback(router, router_ep, dealer, xpub, xpub_ep, sub)
    ctx.destroy(linger=0)


def send_session(outbox: Outbox, net: Loopback) -> None:
    """A short honest SS agent session: HELLO, STEP, DIST, SUGG."""
    outbox.send(net.dealer, Kind.HELLO, {"role": "agent", "endpoint": net.xpub_ep},
                dest="coordinator", endpoint=net.router_ep)
    outbox.send(net.dealer, Kind.STEP, {"episode": 0, "actions": np.array([1], np.int64)},
                dest="envserver", endpoint=net.router_ep, step=0)
    outbox.send(net.xpub, Kind.DIST, dist_body(), dest="subscribers:dist/3/", endpoint=net.xpub_ep,
                topic=dist_topic(3), round=0)
    outbox.send(net.xpub, Kind.SUGG, sugg_body(4), dest="agent:4", endpoint=net.xpub_ep,
                topic=sugg_topic(3, 4), round=0)


@pytest.fixture(params=["frames", "compressed", "hashes"])
def honest_log(request: pytest.FixtureRequest, tmp_path: Path, net: Loopback) -> Path:
    path = tmp_path / "audit.log"
    with AuditLog(path, mode=request.param) as log:
        send_session(Outbox("agent", "ss", RUN, 3, log), net)
    return path


def records(path: Path) -> list[Record]:
    return [r for r in iter_records(path) if isinstance(r, Record)]


# ---- who may send what -------------------------------------------------------------------------


def test_allowed_kinds_per_role_and_algorithm() -> None:
    control = {Kind.HELLO, Kind.READY, Kind.STOP, Kind.HEARTBEAT}
    assert allowed_kinds("agent", "ss") == {Kind.RESET, Kind.STEP, Kind.DIST, Kind.SUGG} | control
    assert allowed_kinds("agent", "ippo") == {Kind.RESET, Kind.STEP} | control
    assert allowed_kinds("envserver", "ss") == {Kind.OBS, Kind.EPISODE_END} | control
    assert allowed_kinds("coordinator", "ippo") == {Kind.DIRECTORY, Kind.START, Kind.STOP}
    with pytest.raises(ValueError, match="unknown role"):
        allowed_kinds("spy", "ss")
    with pytest.raises(ValueError, match="unknown algo"):
        allowed_kinds("agent", "magic")


# ---- refusal -----------------------------------------------------------------------------------


def test_refused_kind_sends_and_logs_nothing(tmp_path: Path, net: Loopback) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path) as log:
        outbox = Outbox("agent", "ss", RUN, 3, log)
        with pytest.raises(KindNotAllowed, match=r"^agent 3 \(algo ss\) may not send REWARD$"):
            outbox.send(net.dealer, Kind.REWARD, {"rewards": np.zeros(3, np.float32)},
                        dest="agent:4", endpoint=net.router_ep)
        ippo = Outbox("agent", "ippo", RUN, 3, log)
        with pytest.raises(KindNotAllowed, match=r"agent 3 \(algo ippo\) may not send DIST"):
            ippo.send(net.dealer, Kind.DIST, dist_body(), dest="envserver", endpoint=net.router_ep)
        assert path.read_bytes() == b"" and outbox.counts == {} and ippo.counts == {}
        # The channel works and is ordered: the first thing that arrives is the allowed HELLO (seq 0),
        # so the refused messages never reached the socket; after it, nothing else is waiting.
        outbox.send(net.dealer, Kind.HELLO, {"role": "agent", "endpoint": "x"}, dest="coordinator",
                    endpoint=net.router_ep)
    routing_id, payload = recv(net.router)
    assert routing_id == b"agent-3" and payload == records(path)[0].frames[0]
    assert net.router.poll(0) == 0
    assert len(records(path)) == 1 and records(path)[0].seq == 0


def test_invalid_message_is_neither_logged_nor_sent(tmp_path: Path, net: Loopback) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path) as log:
        outbox = Outbox("agent", "ss", RUN, 3, log)
        bad = {"probs": np.full((2, 2), 0.9, np.float32)}  # rows do not sum to 1
        with pytest.raises(ProtocolError, match="sums to"):
            outbox.send(net.dealer, Kind.DIST, bad, dest="envserver", endpoint=net.router_ep, round=0)
    assert path.read_bytes() == b"" and outbox.counts == {} and net.router.poll(0) == 0


# ---- exact capture -----------------------------------------------------------------------------


def test_receivers_get_exactly_the_recorded_frames(tmp_path: Path, net: Loopback) -> None:
    net.subscribe(dist_topic(3))
    net.subscribe(sugg_topic(3, 4))
    agent_log, env_log = AuditLog(tmp_path / "agent.log"), AuditLog(tmp_path / "env.log")
    agent = Outbox("agent", "ss", RUN, 3, agent_log)
    send_session(agent, net)
    # DEALER -> ROUTER: the router prepends the peer's routing id; the payload is the recorded frame.
    got = [recv(net.router) for _ in range(2)]
    # XPUB -> SUB: [topic, payload] exactly as recorded.
    got += [recv(net.sub) for _ in range(2)]
    # ROUTER -> DEALER (the env server's reply): the routing id is consumed, the payload is recorded.
    env = Outbox("envserver", "ss", RUN, ENVSERVER_ID, env_log)
    obs = {"episode": 0, "to": 3, "obs": np.ones((1, 3), np.float32), "reward": np.array([-1.0], np.float32),
           "terminated": np.zeros(1, bool),
           "truncated": np.zeros(1, bool), "mask": np.zeros((1, 1), bool), "default_used": False}
    env.send(net.router, Kind.OBS, obs, dest="agent:3", endpoint=net.router_ep, routing_id=b"agent-3", step=0)
    reply = recv(net.dealer)
    agent_log.close()
    env_log.close()
    sent = records(tmp_path / "agent.log")
    assert [g[0] for g in got[:2]] == [b"agent-3"] * 2
    assert [g[1:] for g in got[:2]] == [list(r.frames) for r in sent[:2]]
    assert got[2:] == [list(r.frames) for r in sent[2:]]
    assert [r.lengths for r in sent] == [tuple(len(f) for f in r.frames) for r in sent]
    assert reply == list(records(tmp_path / "env.log")[0].frames)
    assert agent.counts[Kind.DIST] == Tally(1, sum(sent[2].lengths))
    assert sum(t.messages for t in agent.counts.values()) == 4
    assert verify_log(tmp_path / "env.log", "envserver", "ss").ok  # the env server may send an agent its reward


def test_outbox_records_envelope_fields(honest_log: Path) -> None:
    recs = records(honest_log)
    assert [(r.kind, r.seq, r.round, r.step, r.dest) for r in recs] == [
        ("HELLO", 0, None, None, "coordinator"), ("STEP", 1, None, 0, "envserver"),
        ("DIST", 2, 0, None, "subscribers:dist/3/"), ("SUGG", 3, 0, None, "agent:4")]
    assert [r.topic for r in recs] == [None, None, "dist/3/", "sugg/3/4/"]


# ---- verification ------------------------------------------------------------------------------


def test_honest_log_verifies(honest_log: Path) -> None:
    result = verify_log(honest_log, "agent", "ss", src=3)
    assert result.ok, result.failures
    assert result.records == 4 and result.torn is None and result.head == records(honest_log)[-1].hash


def test_log_of_another_algorithm_or_sender_fails(honest_log: Path) -> None:
    reasons = [str(f) for f in verify_log(honest_log, "agent", "ippo").failures]
    assert reasons == ["record 2: kind DIST is not allowed", "record 3: kind SUGG is not allowed"]
    if records(honest_log)[0].frames is not None:
        wrong_src = verify_log(honest_log, "agent", "ss", src=5).failures
        assert [f.index for f in wrong_src] == [0, 1, 2, 3]


def line_of(data: bytes, position: int) -> int:
    """The index of the record whose line holds byte `position`."""
    return data.count(b"\n", 0, position)


def flipped(data: bytes, position: int, value: int) -> bytes:
    return data[:position] + bytes([value]) + data[position + 1:]


def assert_tamper_detected(path: Path, data: bytes, position: int, value: int) -> None:
    """Replace one byte of the log `data` at `path`, verify, restore the original."""
    path.write_bytes(flipped(data, position, value))
    result = verify_log(path, "agent", "ss")
    path.write_bytes(data)
    assert not result.ok, f"byte {position} -> {value:#x} went unnoticed"
    assert min(f.index for f in result.failures) == line_of(data, position), result.failures


def test_flipping_any_byte_fails_and_names_the_record(honest_log: Path) -> None:
    data = honest_log.read_bytes()
    for position in range(len(data)):
        assert_tamper_detected(honest_log, data, position, data[position] ^ 0x01)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.floats(0, 1, exclude_max=True), value=st.integers(0, 255))
def test_replacing_any_byte_with_any_value_fails(honest_log: Path, where: float, value: int) -> None:
    data = honest_log.read_bytes()
    position = int(where * len(data))
    if data[position] != value:
        assert_tamper_detected(honest_log, data, position, value)


def test_deleted_record_breaks_the_chain(honest_log: Path) -> None:
    lines = honest_log.read_bytes().splitlines(keepends=True)
    for k in range(len(lines) - 1):  # deleting the last record is truncation: see VerifyResult.head
        honest_log.write_bytes(b"".join(lines[:k] + lines[k + 1:]))
        failures = verify_log(honest_log, "agent", "ss").failures
        assert failures and failures[0].index == k and "chain broken" in failures[0].reason


def test_reordered_records_break_the_chain(honest_log: Path) -> None:
    lines = honest_log.read_bytes().splitlines(keepends=True)
    lines[1], lines[2] = lines[2], lines[1]
    honest_log.write_bytes(b"".join(lines))
    failures = verify_log(honest_log, "agent", "ss").failures
    assert failures and failures[0].index == 1 and "chain broken" in failures[0].reason


def test_torn_tail_is_reported_and_earlier_records_verify(honest_log: Path, net: Loopback) -> None:
    data = honest_log.read_bytes()
    last_start = data.rindex(b"\n", 0, len(data) - 1) + 1
    for cut in (last_start + 1, (last_start + len(data)) // 2, len(data) - 2):
        honest_log.write_bytes(data[:cut])
        result = verify_log(honest_log, "agent", "ss")
        assert result.ok and result.records == 3 and result.head == records(honest_log)[2].hash
        assert result.torn == TornTail(records=3, size=cut - last_start)
        assert str(result.torn) == f"torn tail after record 2 ({cut - last_start} bytes)"
        assert isinstance(list(iter_records(honest_log))[-1], TornTail)
    # Reopening drops the torn tail and continues the chain and the sequence numbers.
    with AuditLog(honest_log, mode="hashes") as log:
        outbox = Outbox("agent", "ss", RUN, 3, log)
        msg = outbox.send(net.dealer, Kind.READY, {"role": "agent"}, dest="coordinator", endpoint="x")
    assert msg.seq == 3
    result = verify_log(honest_log, "agent", "ss")
    assert result.ok and result.records == 4 and result.torn is None


def test_lost_final_newline_is_a_whole_record(honest_log: Path) -> None:
    honest_log.write_bytes(honest_log.read_bytes()[:-1])
    result = verify_log(honest_log, "agent", "ss")
    assert result.ok and result.records == 4 and result.torn is None
    AuditLog(honest_log).close()  # reopening restores the newline
    assert honest_log.read_bytes().endswith(b"}\n") and verify_log(honest_log, "agent", "ss").ok


# ---- forged logs -------------------------------------------------------------------------------


def forge(path: Path, kind: Kind, body: dict, *, recorded_kind: Kind | None = None, round: int = 0) -> None:
    """Append a record as a dishonest sender's log writer would, bypassing the Outbox's refusal."""
    payload = encode(Message(kind, RUN, 3, 0, body, round=round))
    with AuditLog(path) as log:
        log.append(dest="agent:4", endpoint="tcp://127.0.0.1:1", topic=None,
                   kind=(recorded_kind or kind).value, seq=0, round=round, step=None, frames=[payload])


def test_forged_reward_record_fails(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    forge(path, Kind.REWARD, {"rewards": np.array([1.0, -2.0], np.float32)})
    reasons = [str(f) for f in verify_log(path, "agent", "ss").failures]
    assert reasons == ["record 0: kind REWARD is not allowed",
                       "record 0: carries private field(s) ['rewards'] in REWARD"]


def test_relabelled_record_fails(tmp_path: Path) -> None:
    """A record that claims DIST but whose frames hold a REWARD is caught by decoding the frames."""
    path = tmp_path / "audit.log"
    forge(path, Kind.REWARD, {"rewards": np.array([1.0], np.float32)}, recorded_kind=Kind.DIST)
    reasons = " | ".join(str(f) for f in verify_log(path, "agent", "ss").failures)
    assert "differs from the record's" in reasons and "private field(s) ['rewards']" in reasons


def test_undecodable_payload_fails(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path) as log:
        log.append(dest="agent:4", endpoint="x", topic=None, kind="DIST", seq=0, round=0, step=None,
                   frames=[b"\x81\xa1v\x02"])
    failures = verify_log(path, "agent", "ss").failures
    assert len(failures) == 1 and failures[0].index == 0 and "does not decode" in failures[0].reason


def test_wrong_topic_fails(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path) as log:  # agent 3's suggestion for 4, published on the topic meant for 5
        log.append(dest="agent:4", endpoint="x", topic=sugg_topic(3, 5), kind="SUGG", seq=0, round=0,
                   step=None, frames=[sugg_topic(3, 5), encode(Message(Kind.SUGG, RUN, 3, 0, sugg_body(4), round=0))])
    failures = verify_log(path, "agent", "ss").failures
    assert [str(f) for f in failures] == ["record 0: topic b'sugg/3/5/' does not match a SUGG from sender 3 to 4"]


def test_bad_mode_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="audit mode"):
        AuditLog(tmp_path / "audit.log", mode="everything")


def test_a_log_may_hold_consecutive_runs_each_beginning_with_hello(tmp_path: Path, net: Loopback) -> None:
    """A resumed cluster appends its new run to the same log; a run id switching mid-run still fails."""
    path = tmp_path / "audit.log"
    with AuditLog(path) as log:
        send_session(Outbox("agent", "ss", RUN, 3, log), net)
        send_session(Outbox("agent", "ss", "resumed-run", 3, log), net)  # starts with HELLO
    assert verify_log(path, "agent", "ss").ok
    with AuditLog(path) as log:  # a third run that does not register first
        Outbox("agent", "ss", "spliced-run", 3, log).send(
            net.xpub, Kind.DIST, dist_body(), dest="subscribers:dist/3/", endpoint=net.xpub_ep,
            topic=dist_topic(3), round=0)
    reasons = [str(f) for f in verify_log(path, "agent", "ss").failures]
    assert reasons == ["record 8: run 'spliced-run', but earlier records are of run 'resumed-run' "
                       "(a new run begins with HELLO, or the coordinator's DIRECTORY)"]


def test_the_receive_summary_adds_up_over_sessions(tmp_path: Path) -> None:
    from protocol.transport.inbox import Inbox

    path = tmp_path / "received.json"
    for session in range(2):
        inbox = Inbox("agent 3", logging.getLogger("test"))
        inbox.received[("DIST", 4)] += 2
        inbox.received_bytes[("DIST", 4)] += 100
        inbox.dropped["stale"] += session  # only the second session drops one
        inbox.write_summary(path)
    assert json.loads(path.read_text()) == {"received": {"DIST": {"4": {"messages": 4, "bytes": 200}}},
                                            "dropped": {"stale": 1}}


def test_compressed_frames_are_the_wire_frames_and_inflate_no_further_than_recorded(tmp_path: Path,
                                                                                   net: Loopback) -> None:
    plain, packed = tmp_path / "plain.log", tmp_path / "packed.log"
    for path, mode in ((plain, "frames"), (packed, "compressed")):
        with AuditLog(path, mode=mode) as log:
            send_session(Outbox("agent", "ss", RUN, 3, log), net)
    assert [r.frames for r in records(packed)] == [r.frames for r in records(plain)]
    assert b'"zframes"' in packed.read_bytes() and b'"frames"' not in packed.read_bytes()
    # a hostile record: 1 MB of zeros claiming to be 64 bytes inflates to 65 bytes, and verify says so
    line = packed.read_bytes().splitlines()[0]
    bomb = base64.b64encode(zlib.compress(bytes(1 << 20))).decode()
    fields = json.loads(line)
    fields["zframes"] = [bomb]
    fields["lens"] = [64]
    record = parse_record(0, json.dumps(fields, separators=(",", ":")).encode())
    assert len(record.frames[0]) == 65
    (tmp_path / "bomb.log").write_bytes(json.dumps(fields, separators=(",", ":")).encode() + b"\n")
    assert not verify_log(tmp_path / "bomb.log", "agent", "ss").ok

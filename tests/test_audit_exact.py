"""The audit is exact: a real cluster's audit logs equal, frame for frame, what went over the wire.

Every listening socket of a hand-started cluster sits behind a `WireTap` (agents' XPUBs and the env
server's ROUTER via --advertise, the coordinator via --coordinator), so every TCP connection of the
run passes through a tap. After the run, each recorded stream is parsed as ZMTP and compared with
the audit logs. First, the tap and the parser themselves, on real pyzmq pairs.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import pytest
import zmq

from coordinator.launcher import free_port
from protocol.audit.log import Record, frame_digest, iter_records
from protocol.audit.report import summarise
from protocol.wire.codec import decode
from protocol.wire.messages import ENVSERVER_ID
from protocol.run.rundir import RunDir
from protocol.wire.topics import sugg_topic
from tests.procs import Processes, script, wait_until
from tests.wiretap import WireTap, ZmtpError, ZmtpStream, parse_zmtp

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]  # real multi-process clusters

Messages = list[tuple[bytes, ...]]

# ---- the tap and the parser on real ZeroMQ traffic ---------------------------------------------


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def bound(ctx: zmq.Context, kind: int) -> tuple[zmq.Socket, int]:
    sock = ctx.socket(kind)
    sock.linger = 0
    return sock, sock.bind_to_random_port("tcp://127.0.0.1")


def test_dealer_router_messages_through_the_tap_parse_to_what_was_sent(ctx: zmq.Context) -> None:
    """Short and long (> 255 bytes) frames, empty frames and multipart messages, both directions."""
    router, port = bound(ctx, zmq.ROUTER)
    requests = [(b"hello",), (b"", b"x" * 300, b"y"), (b"z" * 70000,), (b"a", b"")]
    replies = [(b"r" * 256,), (b"one", b"two")]
    with WireTap(port) as tap:
        dealer = ctx.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.connect(tap.endpoint)
        for msg in requests:
            dealer.send_multipart(msg)
        received = [tuple(router.recv_multipart()) for _ in requests]
        for msg in replies:
            router.send_multipart([received[0][0], *msg])
        assert [tuple(dealer.recv_multipart()) for _ in replies] == replies
        dealer.close()
        router.close()
    [conn] = tap.connections
    up, down = parse_zmtp(conn.to_server), parse_zmtp(conn.to_client)
    assert list(up.messages) == requests == [m[1:] for m in received]
    assert list(down.messages) == replies
    for stream, socket_type in ((up, b"DEALER"), (down, b"ROUTER")):
        name, properties = stream.commands[0]
        assert name == "READY" and properties.startswith(b"\x0bSocket-Type\x00\x00\x00\x06" + socket_type)


def test_xpub_sub_messages_and_subscriptions_through_the_tap(ctx: zmq.Context) -> None:
    """The publisher filters: only subscribed topics cross the wire; SUBSCRIBE/CANCEL are commands."""
    xpub, port = bound(ctx, zmq.XPUB)
    with WireTap(port) as tap:
        sub = ctx.socket(zmq.SUB)
        sub.linger = 0
        sub.setsockopt(zmq.SUBSCRIBE, b"dist/1/")
        sub.connect(tap.endpoint)
        assert xpub.recv() == b"\x01dist/1/"  # the subscription arrived: publishing is safe now
        sent = [(b"dist/1/", b"p" * n) for n in (0, 1, 255, 256, 4000)]
        for msg in sent:
            xpub.send_multipart([b"sugg/1/9/", b"not for this subscriber"])
            xpub.send_multipart(msg)
        assert [tuple(sub.recv_multipart()) for _ in sent] == sent
        sub.setsockopt(zmq.UNSUBSCRIBE, b"dist/1/")
        assert xpub.recv() == b"\x00dist/1/"
        sub.close()
        xpub.close()
    [conn] = tap.connections
    up, down = parse_zmtp(conn.to_server), parse_zmtp(conn.to_client)
    assert list(down.messages) == sent
    assert up.messages == ()
    assert up.subscriptions == [b"dist/1/"]
    assert [name for name, _ in up.commands] == ["READY", "SUBSCRIBE", "CANCEL"]


def test_parser_refuses_damaged_streams(ctx: zmq.Context) -> None:
    """A frame cut short, an unknown flag, a foreign greeting: errors, never silently fewer messages."""
    router, port = bound(ctx, zmq.ROUTER)
    with WireTap(port) as tap:
        dealer = ctx.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.connect(tap.endpoint)
        dealer.send_multipart([b"head", b"b" * 1000])
        router.recv_multipart()
        dealer.close()
        router.close()
    stream = bytes(tap.connections[0].to_server)
    assert parse_zmtp(stream).messages == ((b"head", b"b" * 1000),)
    assert parse_zmtp(stream[:40]) == ZmtpStream((), ())  # closed during the handshake
    for damaged in (stream[:-1], stream[:-1005], stream[:-1000], stream + b"\x08\x00", b"GET / HTTP/1.1\r\n" * 5):
        with pytest.raises(ZmtpError):
            parse_zmtp(damaged)


# ---- a real cluster, every connection tapped ---------------------------------------------------

NEIGHBORS = {0: (1,), 1: (0, 2), 2: (1,)}  # the line 0 - 1 - 2
RUN_ID = "audit-exact"


def streams(tap: WireTap) -> list[tuple[ZmtpStream, ZmtpStream]]:
    """(client -> server, server -> client) of every connection that got past the handshake."""
    parsed = [(parse_zmtp(c.to_server), parse_zmtp(c.to_client)) for c in tap.connections]
    return [(up, down) for up, down in parsed if up.commands]


def by_sender(tap: WireTap) -> dict[int, tuple[Messages, Messages]]:
    """The DEALER connections to a ROUTER tap, keyed by the `src` of the messages each carried."""
    found: dict[int, tuple[Messages, Messages]] = {}
    for up, down in streams(tap):
        senders = {decode(m[-1]).src for m in up.messages}
        if not senders:
            continue
        assert len(senders) == 1, f"one connection carried messages of senders {senders}"
        src = senders.pop()
        assert src not in found, f"sender {src} used two connections"
        found[src] = (list(up.messages), list(down.messages))
    return found


def by_subscriber(tap: WireTap, publisher: int) -> dict[int, Messages]:
    """The connections to a publisher's tap, keyed by the subscriber (from its SUBSCRIBE commands)."""
    found: dict[int, Messages] = {}
    for up, down in streams(tap):
        assert up.messages == (), "a subscriber sent messages to a publisher"
        subscribers = [j for j in NEIGHBORS if sugg_topic(publisher, j) in up.subscriptions]
        assert len(subscribers) == 1, f"subscriptions {up.subscriptions} to agent {publisher}"
        j = subscribers[0]
        assert j not in found, f"subscriber {j} connected twice to agent {publisher}"
        assert {m[0] for m in down.messages if m[0].startswith(b"sugg/")} == {sugg_topic(publisher, j)}
        found[j] = list(down.messages)
    return found


def audit(path: Path) -> list[Record]:
    items = list(iter_records(path))
    assert all(isinstance(r, Record) for r in items), f"{path} has a torn tail"
    return items


def sent_to(records: list[Record], dest: str) -> Messages:
    """The recorded frames of every message to `dest`, in order."""
    return [r.frames for r in records if r.dest == dest]


def published_for(records: list[Record], subscriber: int) -> Messages:
    """The recorded frames a subscriber gets: every DIST, and the SUGG records addressed to it."""
    return [r.frames for r in records if r.kind == "DIST" or (r.kind == "SUGG" and r.dest == f"agent:{subscriber}")]


def assert_same(on_wire: Messages, logged: Messages, what: str) -> None:
    """Frame-for-frame equality; on failure, say briefly where they part (not megabytes of frames)."""
    if on_wire == logged:
        return
    k = next((k for k, (a, b) in enumerate(zip(on_wire, logged)) if a != b), min(len(on_wire), len(logged)))
    pytest.fail(f"{what}: {len(on_wire)} messages on the wire, {len(logged)} in the audit log; they differ first "
                f"at message {k}: wire {describe(on_wire, k)}, log {describe(logged, k)}")


def describe(messages: Messages, k: int) -> str:
    if k >= len(messages):
        return "(none)"
    msg = decode(messages[k][-1])
    return f"{msg.kind.value} seq {msg.seq} round {msg.round} step {msg.step}"


def wire_tally(messages: Messages) -> Counter:
    """Messages and bytes by kind, as counted on the wire."""
    tally: Counter = Counter()
    for m in messages:
        kind = decode(m[-1]).kind.value
        tally[kind, "messages"] += 1
        tally[kind, "bytes"] += sum(len(f) for f in m)
    return tally


def start_cluster(procs: Processes, taps: dict[str, WireTap], out: Path) -> dict[str, subprocess.Popen]:
    """Coordinator, env server and three agents started by hand; every listening socket behind its tap."""
    bind = {name: f"tcp://127.0.0.1:{tap.target_port}" for name, tap in taps.items()}
    common = ["--coordinator", taps["coordinator"].endpoint, "--out", str(out), "--run-id", RUN_ID]
    started = {
        "coordinator": procs.start("coordinator", script("ss-coordinator"), "--env", "navigation", "--agents", "3",
                                   "--episodes", "4", "--batch", "2", "--bind", bind["coordinator"],
                                   "--out", str(out), "--run-id", RUN_ID),
        "envserver": procs.start("envserver", script("ss-envserver"), *common, "--bind", bind["envserver"],
                                 "--advertise", taps["envserver"].endpoint),
    }
    for i, nbrs in NEIGHBORS.items():
        mode = "compressed" if i == 1 else "frames"  # agent 1's log holds its frames zlib-compressed
        started[f"agent-{i}"] = procs.start(
            f"agent-{i}", script("ss-agent"), "--id", str(i), "--neighbors", ",".join(map(str, nbrs)),
            "--bind", bind[str(i)], "--advertise", taps[str(i)].endpoint, "--audit", mode, *common)
    return started


def test_every_audit_log_equals_the_traffic_on_the_wire(tmp_path: Path) -> None:
    """Every process's log, the compressed one of agent 1 included, holds exactly the frames it sent."""
    out = tmp_path / "run"
    with ExitStack() as stack:
        taps = {name: stack.enter_context(WireTap(free_port()))
                for name in ("coordinator", "envserver", *map(str, NEIGHBORS))}
        procs = stack.enter_context(Processes(tmp_path / "logs"))  # leaves first: processes die, then taps close
        started = start_cluster(procs, taps, out)
        wait_until(lambda: all(p.poll() == 0 for p in started.values()) or
                   any(p.poll() not in (None, 0) for p in started.values()), 240, "the run to end")
        unfinished = sorted((name for name, proc in started.items() if proc.poll() != 0),
                            key=lambda name: started[name].poll() is None)  # the failed ones first
        assert not unfinished, "\n".join(f"--- {name}: exit {started[name].poll()}\n{procs.log(name)[-2000:]}"
                                          for name in unfinished)
        for tap in taps.values():
            tap.close()  # every process has exited: the taps now hold every byte of the run
    run = RunDir(out)
    assert b'"zframes"' in run.audit(1).read_bytes() and b'"zframes"' not in run.audit(0).read_bytes()
    env_links, coord_links = by_sender(taps["envserver"]), by_sender(taps["coordinator"])
    assert set(env_links) == set(NEIGHBORS) and set(coord_links) == {*NEIGHBORS, ENVSERVER_ID}
    for i, nbrs in NEIGHBORS.items():
        records = audit(run.audit(i))
        assert {r.dest for r in records} == {"envserver", "coordinator", f"subscribers:dist/{i}/",
                                             *(f"agent:{j}" for j in nbrs)}
        # Its DEALERs: everything it sent to the env server and the coordinator, in order.
        assert_same(env_links[i][0], sent_to(records, "envserver"), f"agent {i} -> env server")
        assert_same(coord_links[i][0], sent_to(records, "coordinator"), f"agent {i} -> coordinator")
        assert {r.endpoint for r in records if r.dest == "envserver"} == {taps["envserver"].endpoint}
        # Its XPUB: subscriber j got exactly the DIST records and the SUGG records for j, in order.
        published = by_subscriber(taps[str(i)], i)
        assert set(published) == set(nbrs)
        for j in nbrs:
            assert_same(published[j], published_for(records, j), f"agent {i} -> subscriber {j}")
        # Totals: the wire, counted by kind, is ss-audit's tally (a DIST reaches every subscriber).
        sent = summarise(run.audit(i)).sent
        on_wire = wire_tally(env_links[i][0] + coord_links[i][0] + sum(published.values(), []))
        assert on_wire == Counter({(kind, field): getattr(t, field) * (len(nbrs) if kind == "DIST" else 1)
                                   for kind, t in sent.items() for field in ("messages", "bytes")})
        assert {"DIST", "SUGG", "STEP", "RESET", "HELLO", "READY", "STOP"} == set(sent)
    # The env server and the coordinator log exactly what they sent, too.
    envserver, coordinator = audit(run.process_audit("envserver")), audit(run.process_audit("coordinator"))
    assert_same(coord_links[ENVSERVER_ID][0], sent_to(envserver, "coordinator"), "env server -> coordinator")
    assert_same(coord_links[ENVSERVER_ID][1], sent_to(coordinator, "envserver"), "coordinator -> env server")
    for i in NEIGHBORS:
        # agent i's observations and rewards: only their digests are in the env server's (shared) log
        to_agent = [r for r in envserver if r.dest == f"agent:{i}"]
        assert to_agent and all(r.frames is None for r in to_agent if r.kind == "OBS")
        assert [tuple(map(frame_digest, m)) for m in env_links[i][1]] == [r.digests for r in to_agent], \
            f"env server -> agent {i}"
        assert_same(coord_links[i][1], sent_to(coordinator, f"agent:{i}"), f"coordinator -> agent {i}")

"""Topics, socket factories and keys, with real sockets on loopback (no sleeps: polls and monitor events)."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from protocol.transport import sockets
from protocol.wire.codec import ProtocolError
from protocol.transport.keys import CurveKeys, KeyRing, claims_own_id, generate_keypair, load_keys, load_public, run_key_names
from protocol.wire.messages import COORDINATOR_ID, ENVSERVER_ID
from protocol.wire.topics import dist_topic, parse_topic, sugg_topic

TIMEOUT_MS = 5000


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def wait_event(monitor: zmq.Socket, events: int) -> dict:
    """The next monitor event in `events`, within TIMEOUT_MS."""
    while monitor.poll(TIMEOUT_MS):
        event = recv_monitor_message(monitor)
        if event["event"] & events:
            return event
    raise AssertionError("monitor event did not come")


# ---- topics ------------------------------------------------------------------------------------


def test_topic_helpers() -> None:
    assert dist_topic(3) == b"dist/3/"
    assert sugg_topic(3, 4) == b"sugg/3/4/"
    assert parse_topic(dist_topic(12)) == ("dist", 12, None)
    assert parse_topic(sugg_topic(0, 10)) == ("sugg", 0, 10)


@pytest.mark.parametrize("topic", [
    b"dist/3", b"dist/03/", b"dist/-1/", b"dist/+1/", b"dist//", b"dist/3/4/", b"sugg/3/", b"sugg/3/4",
    b"pub/3/", b"", b"/", b"dist/ 3/", b"DIST/3/", b"dist/3/\x00", b"dist/1" + b"0" * 30 + b"/", "dist/3/",
])
def test_parse_topic_rejects_junk(topic: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_topic(topic)


@pytest.mark.parametrize("bad", [-1, True, 1.0])
def test_topic_ids_must_be_agent_ids(bad: object) -> None:
    with pytest.raises(ValueError):
        dist_topic(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        sugg_topic(0, bad)  # type: ignore[arg-type]


def subscribed_pair(ctx: zmq.Context, topic: bytes) -> tuple[zmq.Socket, zmq.Socket]:
    """An XPUB and a SUB connected to it, returned once the XPUB has seen the subscription."""
    pub = sockets.xpub(ctx)
    endpoint = sockets.bind_random(pub)
    sub = sockets.sub(ctx)
    sub.connect(endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, topic)
    assert pub.poll(TIMEOUT_MS), "subscription never reached the publisher"
    assert pub.recv() == b"\x01" + topic
    return pub, sub


def test_trailing_separator_stops_prefix_matches(ctx: zmq.Context) -> None:
    pub, sub = subscribed_pair(ctx, dist_topic(1))
    pub.send_multipart([dist_topic(10), b"for 10"])
    pub.send_multipart([dist_topic(1), b"for 1"])
    # one publisher -> one subscriber is ordered: had "for 10" passed the filter it would come first
    assert sub.poll(TIMEOUT_MS)
    assert sub.recv_multipart() == [b"dist/1/", b"for 1"]
    assert not sub.poll(100)


def test_without_separator_a_prefix_would_match(ctx: zmq.Context) -> None:
    """The control for the test above: zmq filters by byte prefix."""
    pub, sub = subscribed_pair(ctx, b"dist/1")
    pub.send_multipart([dist_topic(10), b"for 10"])
    assert sub.poll(TIMEOUT_MS)
    assert sub.recv_multipart() == [b"dist/10/", b"for 10"]


# ---- socket factories --------------------------------------------------------------------------

FACTORIES = [sockets.router, sockets.dealer, sockets.xpub, sockets.sub]


@pytest.mark.parametrize("factory", FACTORIES)
def test_factories_apply_hygiene(ctx: zmq.Context, factory) -> None:
    sock = factory(ctx, max_msg_size=12345, hwm=77)
    assert sock.getsockopt(zmq.LINGER) == sockets.LINGER_MS > 0
    assert sock.getsockopt(zmq.HANDSHAKE_IVL) == 5000
    pings = 0 if factory is sockets.xpub else 1000  # a publisher only answers its subscribers' pings
    assert sock.getsockopt(zmq.HEARTBEAT_IVL) == pings
    assert sock.getsockopt(zmq.HEARTBEAT_TIMEOUT) == sock.getsockopt(zmq.HEARTBEAT_TTL) == 5000
    assert sock.getsockopt(zmq.MAXMSGSIZE) == 12345
    assert sock.getsockopt(zmq.SNDHWM) == sock.getsockopt(zmq.RCVHWM) == 77


@pytest.mark.parametrize("factory", FACTORIES)
def test_factory_defaults(ctx: zmq.Context, factory) -> None:
    sock = factory(ctx)
    assert sock.getsockopt(zmq.MAXMSGSIZE) == 64 * 2**20
    assert sock.getsockopt(zmq.SNDHWM) == 10000


def test_dealer_takes_a_routing_id(ctx: zmq.Context) -> None:
    d = sockets.dealer(ctx, routing_id=b"agent-3")
    assert d.getsockopt(zmq.IMMEDIATE) == 0
    assert d.getsockopt(zmq.ROUTING_ID) == b"agent-3"


def test_dealer_keeps_last_reply(ctx: zmq.Context) -> None:
    """A server that replies and exits at once: its replies must still be readable by the dealer."""
    server_ctx = zmq.Context()
    router = sockets.router(server_ctx)
    endpoint = sockets.bind_random(router)
    dealer = sockets.dealer(ctx)
    dealer.connect(endpoint)
    dealer.send(b"request")  # test-only raw socket: not a process send path
    assert router.poll(5000)
    routing_id, _ = router.recv_multipart()
    for i in range(3):
        router.send_multipart([routing_id, b"reply %d" % i])
    router.close()
    server_ctx.term()  # lingers until the replies are out, then the connection is gone
    got = []
    while dealer.poll(2000):
        got.append(dealer.recv())
    assert got == [b"reply 0", b"reply 1", b"reply 2"]


def test_bind_random_returns_the_loopback_endpoint(ctx: zmq.Context) -> None:
    endpoint = sockets.bind_random(sockets.router(ctx))
    assert endpoint.startswith("tcp://127.0.0.1:") and not endpoint.endswith(":*")


def test_router_is_mandatory(ctx: zmq.Context) -> None:
    r = sockets.router(ctx)
    sockets.bind_random(r)
    with pytest.raises(zmq.ZMQError) as info:
        r.send_multipart([b"nobody", b"hello"])
    assert info.value.errno == zmq.EHOSTUNREACH


def test_xpub_reports_every_subscription(ctx: zmq.Context) -> None:
    pub, _ = subscribed_pair(ctx, b"dist/2/")
    second = sockets.sub(ctx)
    second.connect(pub.getsockopt_string(zmq.LAST_ENDPOINT))
    second.setsockopt(zmq.SUBSCRIBE, b"dist/2/")
    # without XPUB_VERBOSE the repeated subscription would be swallowed
    assert pub.poll(TIMEOUT_MS)
    assert pub.recv() == b"\x01dist/2/"


def connected_pair(ctx: zmq.Context, max_msg_size: int) -> tuple[zmq.Socket, zmq.Socket, zmq.Socket]:
    """(router, dealer, router monitor) with the dealer's connection handshaken."""
    r = sockets.router(ctx, max_msg_size=max_msg_size)
    monitor = r.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
    endpoint = sockets.bind_random(r)
    d = sockets.dealer(ctx, routing_id=b"a")
    d.setsockopt(zmq.SNDTIMEO, TIMEOUT_MS)
    d.connect(endpoint)
    wait_event(monitor, zmq.EVENT_HANDSHAKE_SUCCEEDED)
    return r, d, monitor


def test_message_over_maxmsgsize_is_dropped_with_the_connection(ctx: zmq.Context) -> None:
    r, d, monitor = connected_pair(ctx, max_msg_size=1000)
    d.send(b"x" * 999)
    assert r.poll(TIMEOUT_MS)
    assert r.recv_multipart() == [b"a", b"x" * 999]
    d.send(b"y" * 1001)
    wait_event(monitor, zmq.EVENT_DISCONNECTED)
    assert not r.poll(0)


# ---- CURVE and keys ----------------------------------------------------------------------------


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, CurveKeys]:
    """A run's key directory (envserver, agent0, agent1) and a stranger's pair made elsewhere."""
    for name in ("envserver", "agent0", "agent1"):
        generate_keypair(tmp_path / "run", name)
    generate_keypair(tmp_path / "elsewhere", "agent0")
    server_pub = tmp_path / "run/envserver.key"
    return {
        "server": KeyRing(tmp_path / "run", ENVSERVER_ID).server(),
        "client": KeyRing(tmp_path / "run", 0).client(ENVSERVER_ID),
        "stranger": load_keys(tmp_path / "elsewhere/agent0.key_secret", server_pub),
        "wrong_server": load_keys(tmp_path / "run/agent0.key_secret", tmp_path / "run/agent1.key"),
        "ring": KeyRing(tmp_path / "run", ENVSERVER_ID),
    }


def test_generate_keypair_files(tmp_path: Path) -> None:
    public, secret = generate_keypair(tmp_path / "keys", "agent-0")
    assert (public.name, secret.name) == ("agent-0.key", "agent-0.key_secret")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert "secret-key" not in public.read_text() and "secret-key" in secret.read_text()
    assert load_public(public) == load_keys(secret).public
    assert len(load_keys(secret).secret) == 40  # Z85
    with pytest.raises(FileExistsError):
        generate_keypair(tmp_path / "keys", "agent-0")
    with pytest.raises(ValueError, match="no secret key"):
        load_keys(public)


def curve_pair(ctx: zmq.Context, server: CurveKeys, client: CurveKeys | None):
    r = sockets.router(ctx, curve=server)
    monitor = r.get_monitor_socket()
    endpoint = sockets.bind_random(r)
    d = sockets.dealer(ctx, curve=client)
    d.setsockopt(zmq.SNDTIMEO, TIMEOUT_MS)
    d.connect(endpoint)
    return r, d, monitor


def test_curve_round_trip_names_the_client_by_its_key(ctx: zmq.Context, keys: dict) -> None:
    auth = keys["ring"].authenticator(ctx)
    try:
        r, d, _ = curve_pair(ctx, keys["server"], keys["client"])
        assert r.getsockopt(zmq.CURVE_SERVER) == 1 and r.getsockopt(zmq.MECHANISM) == zmq.CURVE
        d.send(b"secret payload")
        assert r.poll(TIMEOUT_MS)
        routing_id, frame = r.recv_multipart(copy=False)
        assert frame.bytes == b"secret payload" and frame.get("User-Id") == "agent0"
        assert claims_own_id(frame.get("User-Id"), 0) and not claims_own_id(frame.get("User-Id"), 1)
    finally:
        auth.stop()


FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
          | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


@pytest.mark.parametrize("client", ["wrong_server", None, "stranger"])
def test_curve_rejects_wrong_key_plain_client_or_key_outside_the_run(ctx: zmq.Context, keys: dict,
                                                                     client: str | None) -> None:
    """A stranger's key is valid CURVE but not in the run's directory: ZAP refuses it."""
    auth = keys["ring"].authenticator(ctx)
    try:
        r, d, monitor = curve_pair(ctx, keys["server"], keys[client] if client else None)
        wait_event(monitor, FAILED)
        assert not r.poll(0)
    finally:
        auth.stop()


def test_curve_server_without_a_zap_handler_fails_closed(ctx: zmq.Context, keys: dict) -> None:
    r, d, monitor = curve_pair(ctx, keys["server"], keys["client"])
    d.send(b"let me in")
    wait_event(monitor, FAILED)
    assert not r.poll(200)


def test_key_ring_names_and_errors(tmp_path: Path) -> None:
    assert run_key_names(2, learner=True) == ["coordinator", "envserver", "learner", "agent0", "agent1"]
    with pytest.raises(FileNotFoundError, match="no secret key for agent3"):
        KeyRing(tmp_path, 3)
    generate_keypair(tmp_path, "agent3")
    with pytest.raises(FileNotFoundError, match="no public key for coordinator"):
        KeyRing(tmp_path, 3).client(COORDINATOR_ID)


def test_connecting_curve_socket_needs_the_server_key(ctx: zmq.Context, keys: dict[str, CurveKeys]) -> None:
    with pytest.raises(ValueError, match="server's public key"):
        sockets.dealer(ctx, curve=keys["server"])


def test_an_agent_pings_its_neighbours_at_a_bounded_rate(ctx: zmq.Context) -> None:
    assert sockets.peer_heartbeat_ms(7) == sockets.peer_heartbeat_ms(20) == 1000
    assert sockets.peer_heartbeat_ms(127) == 6350  # 127 links, 20 pings a second in all
    sub = sockets.sub(ctx, heartbeat_ms=sockets.peer_heartbeat_ms(127))
    try:
        assert sub.getsockopt(zmq.HEARTBEAT_IVL) == 6350 and sub.getsockopt(zmq.HEARTBEAT_TIMEOUT) == 31750
    finally:
        sub.close(linger=0)

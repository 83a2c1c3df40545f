"""Per-neighbour authorization at each agent's publisher (agent/publisher.py), on real sockets: under
CURVE a subscription is granted only to the key entitled to the topic; any other key, the env server's
and the coordinator's included, receives nothing. Without keys the topic rule still holds."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import zmq

from agent.exchange import RoundKinds
from agent.publisher import Publisher
from protocol.transport import sockets
from protocol.transport.inbox import Inbox
from protocol.transport.keys import KeyRing, client_keys, generate_keypair, run_key_names, server_keys
from protocol.wire.messages import CENTRAL_LEARNER_ID, COORDINATOR_ID, ENVSERVER_ID, Kind
from protocol.wire.topics import topic

SS = RoundKinds(broadcast=frozenset({Kind.DIST}), addressed=frozenset({Kind.SUGG}))


def publisher(sock: zmq.Socket | None = None, neighbours: tuple[int, ...] = (1, 3), kinds: RoundKinds = SS) -> Publisher:
    return Publisher(sock, 0, "tcp://127.0.0.1:1", neighbours, kinds, Inbox("agent 0", logging.getLogger("t")))


@pytest.mark.parametrize("wanted, user, granted", [
    (b"dist/0/", "agent1", True),
    (b"dist/0/", "agent3", True),
    (b"dist/0/", None, True),  # plaintext: no identity, the topic rule only
    (b"sugg/0/1/", "agent1", True),
    (b"sugg/0/1/", None, True),
    (b"dist/0/", "agent2", False),  # not a neighbour
    (b"dist/0/", "envserver", False),
    (b"dist/0/", "coordinator", False),
    (b"sugg/0/1/", "agent3", False),  # a neighbour, but not the addressee
    (b"sugg/0/2/", "agent2", False),  # we suggest nothing to a non-neighbour
    (b"sugg/0/2/", None, False),
    (b"", None, False),  # a prefix: everything
    (b"dist/", None, False),
    (b"dist/1/", "agent1", False),  # another agent's topic
    (b"adv/0/", "agent1", False),  # a kind SS never sends
    (b"dist/00/", None, False),
])
def test_the_grant_rule(wanted: bytes, user: str | None, granted: bool) -> None:
    assert (publisher().refusal(wanted, user) is None) == granted


@pytest.fixture
def run_keys(tmp_path: Path) -> Path:
    for name in run_key_names(4, learner=True):
        generate_keypair(tmp_path, name)
    return tmp_path


@contextmanager
def curve_publisher(keys: Path, neighbours: tuple[int, ...], kinds: RoundKinds) -> Iterator[tuple]:
    """Agent 0's CURVE publisher on loopback: (context, XPUB, endpoint, Publisher); torn down after."""
    ctx = zmq.Context()
    auth = KeyRing(keys, 0).authenticator(ctx)
    try:
        pub = sockets.xpub(ctx, curve=server_keys(KeyRing(keys, 0)), manual=True)
        endpoint = sockets.bind(pub, "tcp://127.0.0.1:0")
        yield ctx, pub, endpoint, publisher(pub, neighbours, kinds)
    finally:
        auth.stop()
        ctx.destroy(linger=0)


def spy(ctx: zmq.Context, keys: Path | None, who: int, endpoint: str, topics: list[bytes]) -> zmq.Socket:
    """A SUB with `who`'s key (None: plaintext) asking agent 0 for `topics`."""
    sock = sockets.sub(ctx, curve=client_keys(KeyRing(keys, who), 0) if keys else None)
    for t in topics:
        sock.setsockopt(zmq.SUBSCRIBE, t)
    sock.connect(endpoint)
    return sock


def received(socks: dict, within_s: float) -> dict:
    """key -> sorted topics of every message each socket gets within `within_s` (absence is what some tests
    assert, so all sockets are watched over the same window)."""
    poller = zmq.Poller()
    for sock in socks.values():
        poller.register(sock, zmq.POLLIN)
    got: dict = {key: [] for key in socks}
    end = time.monotonic() + within_s
    while (left := end - time.monotonic()) > 0:
        for sock, _ in poller.poll(int(left * 1000)):
            got[next(k for k, s in socks.items() if s is sock)].append(sock.recv_multipart()[0])
    return {key: sorted(topics) for key, topics in got.items()}


@pytest.mark.parametrize("kinds", [SS, RoundKinds(broadcast=frozenset({Kind.ADV})),
                                   RoundKinds(broadcast=frozenset({Kind.CRITIC_PARAMS})),
                                   RoundKinds(broadcast=frozenset({Kind.DIST, Kind.POLICY_PARAMS}))],
                         ids=["ss", "vs", "vps", "ps"])
def test_under_curve_only_the_entitled_keys_receive(run_keys: Path, kinds: RoundKinds) -> None:
    with curve_publisher(run_keys, (1, 3), kinds) as (ctx, pub, endpoint, link):
        everything = [b"", *(topic(k, 0) for k in kinds.broadcast),
                      *(topic(k, 0, j) for k in kinds.addressed for j in range(4))]
        spies = {who: spy(ctx, run_keys, who, endpoint, everything)
                 for who in (1, 2, 3, ENVSERVER_ID, COORDINATOR_ID, CENTRAL_LEARNER_ID)}
        link.wait_subscribed(30)  # every neighbour granted its topics
        link.serve(500)  # and every other request answered (refused)
        for k in sorted(kinds.broadcast):
            pub.send_multipart([topic(k, 0), b"payload"])
        for k in sorted(kinds.addressed):
            for j in (1, 3):
                pub.send_multipart([topic(k, 0, j), b"payload"])
        expected = {j: sorted([topic(k, 0) for k in kinds.broadcast] + [topic(k, 0, j) for k in kinds.addressed])
                    for j in (1, 3)}
        assert received(spies, 1.0) == {who: expected.get(who, []) for who in spies}
        assert link.refused >= 4  # at least the three strangers' requests and the neighbours' b""


def test_plaintext_refuses_prefixes_and_other_topics() -> None:
    ctx = zmq.Context()
    try:
        pub = sockets.xpub(ctx, manual=True)
        endpoint = sockets.bind(pub, "tcp://127.0.0.1:0")
        link = publisher(pub, (1,))
        everyone = spy(ctx, None, 2, endpoint, [b"", b"dist/", b"sugg/0/"])
        neighbour = spy(ctx, None, 1, endpoint, [topic(Kind.DIST, 0), topic(Kind.SUGG, 0, 1)])
        link.wait_subscribed(30)
        link.serve(500)
        pub.send_multipart([topic(Kind.DIST, 0), b"x"])
        pub.send_multipart([topic(Kind.SUGG, 0, 1), b"x"])
        assert received({"everyone": everyone, "neighbour": neighbour}, 1.0) == \
            {"everyone": [], "neighbour": [b"dist/0/", b"sugg/0/1/"]}
        assert link.refused == 3
    finally:
        ctx.destroy(linger=0)


def test_upstream_junk_is_read_and_dropped_and_oversize_disconnects() -> None:
    """An XSUB may send anything upstream: small junk is read and counted, a frame over the limit costs the
    sender its connection; the publisher keeps granting."""
    ctx = zmq.Context()
    try:
        pub = sockets.xpub(ctx, manual=True, max_msg_size=1024, rcv_hwm=10)
        endpoint = sockets.bind(pub, "tcp://127.0.0.1:0")
        link = publisher(pub, (1,))
        junk = ctx.socket(zmq.XSUB)
        junk.connect(endpoint)
        for _ in range(50):
            junk.send(b"\x07" + b"j" * 100)
        junk.send(b"\x07" + b"J" * 10_000)  # over MAXMSGSIZE: disconnected
        neighbour = spy(ctx, None, 1, endpoint, [topic(Kind.DIST, 0), topic(Kind.SUGG, 0, 1)])
        link.wait_subscribed(30)
        deadline = time.monotonic() + 30
        while link.inbox.dropped["invalid"] < 10 and time.monotonic() < deadline:
            link.serve(200)
        assert link.inbox.dropped["invalid"] >= 10
        pub.send_multipart([topic(Kind.DIST, 0), b"x"])
        assert received({1: neighbour}, 1.0) == {1: [b"dist/0/"]}
    finally:
        ctx.destroy(linger=0)


def test_under_curve_a_subscriber_leaving_is_counted_not_fatal(run_keys: Path) -> None:
    """A subscriber that disconnects makes libzmq hand the XPUB an unsubscription of its own, with no
    metadata (no User-Id): it is counted, and the publisher goes on (it once raised EINVAL and ended a run)."""
    with curve_publisher(run_keys, (1,), SS) as (ctx, _, endpoint, link):
        neighbour = spy(ctx, run_keys, 1, endpoint, [topic(Kind.DIST, 0), topic(Kind.SUGG, 0, 1)])
        link.wait_subscribed(30)
        assert link.granted[topic(Kind.DIST, 0)] == 1
        neighbour.close(linger=0)
        deadline = time.monotonic() + 30
        while link.granted[topic(Kind.DIST, 0)] and time.monotonic() < deadline:
            link.serve(200)
        assert link.granted[topic(Kind.DIST, 0)] == 0 and link.refused == 0

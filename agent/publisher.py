"""Agent i's publisher: an XPUB that grants each subscription only to the peer entitled to it.

The socket is XPUB_MANUAL: a subscription takes effect only when we grant it, on the connection that asked.
The rule (`refusal`): `<kind>/i/` (a broadcast: DIST, ADV, CRITIC_PARAMS, POLICY_PARAMS) goes to i's
neighbours only (the candidate set its topology allows), `<kind>/i/j/` (addressed: SUGG) to j alone; no
other topic, no prefix (b"" would be everything), no other subscriber. Under CURVE the subscriber is the
key the ZAP handler named (its User-Id), so a non-neighbour's key, the env server's and the coordinator's
get nothing. Without keys there is no identity to check: the topic rule still holds, but any process that
reaches the socket may claim a neighbour's topics (plaintext is for loopback only).

The inbound side of an XPUB carries only subscriptions: MAX_SUBSCRIPTION_BYTES and SUBSCRIPTION_HWM bound
what a peer can queue at us, and `serve` reads (and grants or refuses) whatever has arrived.
"""

from __future__ import annotations

import time

import zmq

from agent.exchange import RoundKinds
from protocol.transport import sockets
from protocol.wire.codec import ProtocolError
from protocol.transport.inbox import Inbox
from protocol.transport.keys import key_name
from protocol.wire.topics import TOPIC_KINDS, parse_topic, topic

# a topic is < 64 bytes, but CurveZMQ's handshake (INITIATE, ~300 bytes with metadata) passes the same limit:
# 1024 is safe for both; a peer sending more upstream is disconnected
MAX_SUBSCRIPTION_BYTES = 1024
SUBSCRIPTION_HWM = 1000  # subscriptions queued at most per connection before ZeroMQ stops reading it


class Publisher:
    """Grants subscriptions on agent `me`'s XPUB to its `neighbours` for the kinds it sends (`kinds`)."""

    def __init__(self, sock: zmq.Socket, me: int, endpoint: str, neighbours: tuple[int, ...], kinds: RoundKinds,
                 inbox: Inbox):
        self.sock = sock
        self.me = me
        self.endpoint = endpoint
        self.neighbours = frozenset(neighbours)
        self.kinds = kinds
        self.inbox = inbox
        self.granted: dict[bytes, int] = {}  # topic -> live grants (a reconnecting neighbour adds one)
        self.refused = 0

    def refusal(self, wanted: bytes, user_id: str | None) -> str | None:
        """None if the subscriber (its CURVE User-Id, None on plain sockets) is entitled to `wanted`, else why not."""
        try:
            kind_name, src, dst = parse_topic(wanted)
        except ProtocolError:
            return f"topic {wanted[:40]!r} is not one of ours (no prefixes, no other agent's)"
        kind = TOPIC_KINDS[kind_name]
        if src != self.me:
            return f"topic {wanted!r} is agent {src}'s, not ours"
        if dst is None:
            if kind not in self.kinds.broadcast:
                return f"we send no {kind.value} to subscribers"
            entitled = self.neighbours
        else:
            if kind not in self.kinds.addressed or dst not in self.neighbours:
                return f"we send no {kind.value} to agent {dst}"
            entitled = frozenset({dst})
        if user_id is not None and user_id not in {key_name(j) for j in entitled}:
            return f"{user_id} is not entitled to {wanted!r}"
        return None

    def serve(self, timeout_ms: int = 0) -> None:
        """Grant or refuse every subscription that has arrived (waiting up to `timeout_ms` for the first)."""
        while self.sock.poll(timeout_ms):
            timeout_ms = 0
            parts, user_id = sockets.recv_authenticated(self.sock)
            event = parts[0] if len(parts) == 1 else b""  # a subscription is one frame
            if event[:1] == b"\x01":
                self._subscribe(event[1:], user_id)
            elif event[:1] == b"\x00":
                self._unsubscribe(event[1:])
            else:
                self.inbox.drop("invalid", f"{sum(map(len, parts))}-byte upstream message at our publisher "
                                           "(not a subscription)")

    def _subscribe(self, wanted: bytes, user_id: str | None) -> None:
        if user_id is None and self.sock.getsockopt(zmq.CURVE_SERVER):
            reason: str | None = f"subscription to {wanted[:40]!r} with no CURVE identity"
        else:
            reason = self.refusal(wanted, user_id)
        if reason is not None:
            self.refused += 1
            self.inbox.drop("unauthorized", f"subscription refused at {self.endpoint}: {reason}")
            return
        self.sock.setsockopt(zmq.SUBSCRIBE, wanted)  # on the connection that asked (XPUB_MANUAL)
        self.granted[wanted] = self.granted.get(wanted, 0) + 1

    def _unsubscribe(self, wanted: bytes) -> None:
        """A subscriber left (ZeroMQ already dropped its subscriptions with its connection): count it."""
        if self.granted.get(wanted, 0) > 0:
            self.granted[wanted] -= 1

    def wait_subscribed(self, deadline_s: float) -> None:
        """Block until every neighbour subscribed to every topic it is entitled to (the slow-joiner fix)."""
        wanted = {topic(k, self.me) for k in self.kinds.broadcast}
        wanted |= {topic(k, self.me, j) for j in self.neighbours for k in self.kinds.addressed}
        needed = {t: 1 if parse_topic(t)[2] is not None else len(self.neighbours) for t in wanted}
        end = time.monotonic() + deadline_s
        while not all(self.granted.get(t, 0) >= n for t, n in needed.items()):
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"not every neighbour of agent {self.me} ({sorted(self.neighbours)}) "
                                   f"subscribed at {self.endpoint} within {deadline_s:.0f}s")
            self.serve(int(min(left, 0.2) * 1000))

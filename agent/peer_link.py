"""The ZeroMQ exchange between neighbours: our XPUB out, one SUB per neighbour in.

Round r: publish our broadcast bodies on `<kind>/i/` and each addressed body on `<kind>/i/j/`
(SS: DIST on `dist/i/`, SUGG on `sugg/i/j/`); then collect, from each neighbour, every kind the round
carries (`RoundKinds`), tagged with round r, until all arrived or the deadline passes. What is kept,
what is a gap and who is silent is `agent/rounds.py`'s, the same in memory; a silent neighbour is
waited for only briefly (SILENT_GRACE_S) until it is back, so a dead or paused neighbour costs its
neighbours one deadline, not one per round. Which SUB socket a message came in on says who sent it; a
`src` that disagrees is refused.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np
import zmq

from agent.exchange import Outgoing, Received, RoundKinds
from agent.publisher import Publisher
from agent.rounds import RoundBook
from protocol.transport import sockets
from protocol.audit.outbox import Outbox
from protocol.wire.codec import ProtocolError
from protocol.transport.inbox import Inbox
from protocol.transport.keys import KeyRing, client_keys
from protocol.wire.messages import Kind, Message
from protocol.wire.topics import TOPIC_KINDS, parse_topic, topic

log = logging.getLogger("ss-agent")

SILENT_GRACE_S = 0.2  # how long a round waits for neighbours that missed their previous round


class PeerLink:
    """Agent `me`'s pub/sub links to its neighbours."""

    def __init__(self, ctx: zmq.Context, me: int, pub: zmq.Socket, pub_endpoint: str,
                 peers: dict[int, str], outbox: Outbox, inbox: Inbox, n_actions: int, kinds: RoundKinds,
                 while_waiting: Callable[[], None] = lambda: None, keys: KeyRing | None = None):
        self.me = me
        self.pub = pub
        self.pub_endpoint = pub_endpoint
        self.publisher = Publisher(pub, me, pub_endpoint, tuple(sorted(peers)), kinds, inbox)
        self.outbox = outbox
        self.inbox = inbox
        self.n_actions = n_actions
        self.subs: dict[zmq.Socket, int] = {}
        self.poller = zmq.Poller()
        self.kinds = kinds  # every kind this algorithm may receive, over the whole run
        self.while_waiting = while_waiting  # e.g. raise if the coordinator stopped the run
        heartbeat_ms = sockets.peer_heartbeat_ms(len(peers))
        for j, endpoint in sorted(peers.items()):
            # CURVE: the key proves the publisher is j
            sub = sockets.sub(ctx, curve=client_keys(keys, j), heartbeat_ms=heartbeat_ms)
            for t in self.topics_from(j):
                sub.setsockopt(zmq.SUBSCRIBE, t)
            sub.connect(endpoint)
            self.subs[sub] = j
            self.poller.register(sub, zmq.POLLIN)
        self.poller.register(pub, zmq.POLLIN)  # subscriptions: granted or refused as they come
        self.neighbors = tuple(sorted(peers))
        self.book = RoundBook(me, inbox, log)  # which round messages we keep, gaps, silent neighbours

    def topics_from(self, j: int) -> list[bytes]:
        """The topics we subscribe to on neighbour j's publisher."""
        return [topic(k, j) for k in sorted(self.kinds.broadcast)] + \
               [topic(k, j, self.me) for k in sorted(self.kinds.addressed)]

    def wait_subscribed(self, deadline_s: float) -> None:
        """Block until every neighbour subscribed to (and was granted) our topics: the slow-joiner fix."""
        self.publisher.wait_subscribed(deadline_s)

    # ---- one exchange round -----------------------------------------------------------------

    def exchange(self, round_id: int, out: Outgoing, expect: dict[int, frozenset[Kind]], rows: int,
                 deadline_s: float) -> Received:
        """Publish our round messages, then gather from each neighbour the kinds `expect` names for it."""
        self.publisher.serve()  # grant what (re)connected neighbours asked for before we publish
        for kind, body in sorted(out.broadcast.items()):
            self.outbox.send(self.pub, kind, body, dest=f"subscribers:{kind.value.lower()}/{self.me}/",
                             endpoint=self.pub_endpoint, topic=topic(kind, self.me), round=round_id)
        for j, bodies in sorted(out.addressed.items()):
            for kind, body in sorted(bodies.items()):
                self.outbox.send(self.pub, kind, body, dest=f"agent:{j}", endpoint=self.pub_endpoint,
                                 topic=topic(kind, self.me, j), round=round_id)
        got = self.book.begin(round_id)
        wanted = {(j, k) for j, kinds in expect.items() for k in kinds}
        awaited = self.book.awaited(expect)  # a silent neighbour holds nobody up
        end = time.monotonic() + deadline_s
        while not wanted <= got.keys() and (left := end - time.monotonic()) > 0:
            if awaited <= got.keys():  # only silent neighbours missing: a short grace, in case they are back
                end = min(end, time.monotonic() + SILENT_GRACE_S)
            self.while_waiting()
            for sock, _ in self.poller.poll(int(min(left, 0.5) * 1000)):
                if sock is self.pub:
                    self.publisher.serve()
                else:
                    self._receive(sock, round_id, got, rows)
        return self.book.settle(round_id, expect, got, deadline_s)

    def _receive(self, sub: zmq.Socket, round_id: int, got: dict, rows: int) -> None:
        j = self.subs[sub]
        parts = sub.recv_multipart()
        if len(parts) != 2:
            self.inbox.drop("invalid", f"{len(parts)} frames from neighbour {j}")
            return
        topic_frame, frame = parts
        try:
            kind_name, topic_src, topic_dst = parse_topic(topic_frame)
        except ProtocolError as err:
            self.inbox.drop("invalid", f"topic from neighbour {j}: {err}")
            return
        kind = TOPIC_KINDS[kind_name]
        msg = self.inbox.accept(frame, kinds={kind}, src=j, origin=f"neighbour {j}")
        if msg is None:
            return
        problem = self._check(msg, topic_src, topic_dst, rows)
        if problem:
            self.inbox.drop("invalid", f"{kind.value} from neighbour {j}: {problem}")
        else:
            self.book.offer(got, round_id, j, kind, msg.round, msg.body)

    def _check(self, msg: Message, topic_src: int, topic_dst: int | None, rows: int) -> str | None:
        """Shape and addressing checks against this run's spaces (the codec checks the rest)."""
        if topic_src != msg.src:
            return f"topic says src {topic_src}, message says {msg.src}"
        if topic_dst not in (None, self.me):
            return f"addressed to agent {topic_dst}, not to {self.me}"
        if "to" in msg.body and msg.body["to"] != self.me:
            return f"body addressed to agent {msg.body['to']}, not to {self.me}"
        probs: np.ndarray | None = msg.body.get("probs")
        marked: np.ndarray | None = msg.body.get("rows")
        if marked is not None and marked.shape != (rows,):
            return f"rows shape {marked.shape}, expected {(rows,)}"
        held = rows if marked is None else int(marked.sum())
        if probs is not None and probs.shape != (held, self.n_actions):
            return f"probs shape {probs.shape}, expected {(held, self.n_actions)}"
        return None

    def close(self) -> None:
        """linger 0: a SUB socket only ever sends (un)subscriptions, and those queued for a neighbour that has
        already gone would otherwise hold the context's term() for the full LINGER (1 s) at every run's end."""
        for sub in self.subs:
            sub.close(linger=0)

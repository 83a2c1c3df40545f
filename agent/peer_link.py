"""The ZeroMQ exchange between neighbours: our XPUB out, one SUB per neighbour in.

Round r: publish DIST on `dist/i/` and, for each neighbour j, SUGG on `sugg/i/j/`; then collect j's
DIST and j's SUGG for us, tagged with round r, until all arrived or the deadline passes. A neighbour
whose messages are missing at the deadline is a communication gap for that round (the learner drops
its terms). Messages for later rounds are kept; earlier rounds and duplicates are dropped and counted.
Which SUB socket a message came in on says who sent it; a `src` that disagrees is refused.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import zmq

from agent.exchange import Incoming, Outgoing
from protocol import sockets
from protocol.audit import Outbox
from protocol.codec import ProtocolError
from protocol.inbox import Inbox
from protocol.messages import Kind, Message
from protocol.topics import dist_topic, parse_topic, sugg_topic

log = logging.getLogger("ss-agent")


class PeerLink:
    """Agent `me`'s pub/sub links to its neighbours."""

    def __init__(self, ctx: zmq.Context, me: int, pub: zmq.Socket, pub_endpoint: str,
                 peers: dict[int, str], outbox: Outbox, inbox: Inbox, n_actions: int):
        self.me = me
        self.pub = pub
        self.pub_endpoint = pub_endpoint
        self.outbox = outbox
        self.inbox = inbox
        self.n_actions = n_actions
        self.subs: dict[zmq.Socket, int] = {}
        self.poller = zmq.Poller()
        for j, endpoint in sorted(peers.items()):
            sub = sockets.sub(ctx)
            sub.setsockopt(zmq.SUBSCRIBE, dist_topic(j))
            sub.setsockopt(zmq.SUBSCRIBE, sugg_topic(j, me))
            sub.connect(endpoint)
            self.subs[sub] = j
            self.poller.register(sub, zmq.POLLIN)
        self.neighbors = tuple(sorted(peers))
        self.early: dict[int, dict[tuple[int, Kind], Message]] = {}  # round -> (src, kind) -> message
        self.subscribed: set[bytes] = set()
        self.gaps = 0

    # ---- start-up: the slow-joiner fix ------------------------------------------------------

    def wait_subscribed(self, deadline_s: float) -> None:
        """Block until every neighbour's SUB has subscribed to our topics (XPUB reports each one)."""
        wanted = {sugg_topic(self.me, j) for j in self.neighbors}
        end = time.monotonic() + deadline_s
        while not wanted <= self.subscribed:
            left = end - time.monotonic()
            if left <= 0:
                missing = sorted(parse_topic(t)[2] for t in wanted - self.subscribed)
                raise TimeoutError(f"neighbours {missing} never subscribed to agent {self.me} "
                                   f"at {self.pub_endpoint} within {deadline_s:.0f}s")
            if self.pub.poll(int(min(left, 0.2) * 1000)):
                event = self.pub.recv()
                if event[:1] == b"\x01":
                    self.subscribed.add(event[1:])

    # ---- one exchange round -----------------------------------------------------------------

    def exchange(self, round_id: int, out: Outgoing, rows: int, deadline_s: float) -> dict[int, Incoming]:
        """Publish our round messages, then gather each neighbour's DIST and SUGG for this round."""
        body: dict[str, object] = {"probs": out.probs}
        if out.actions is not None:
            body.update(actions=out.actions, behaviour=out.behaviour)
        self.outbox.send(self.pub, Kind.DIST, body, dest=f"subscribers:dist/{self.me}/",
                         endpoint=self.pub_endpoint, topic=dist_topic(self.me), round=round_id)
        for j in self.neighbors:
            self.outbox.send(self.pub, Kind.SUGG, {"to": j, "probs": out.suggestions[j]},
                             dest=f"agent:{j}", endpoint=self.pub_endpoint,
                             topic=sugg_topic(self.me, j), round=round_id)
        got = self.early.pop(round_id, {})
        end = time.monotonic() + deadline_s
        while len(got) < 2 * len(self.neighbors) and (left := end - time.monotonic()) > 0:
            for sub, _ in self.poller.poll(int(min(left, 0.5) * 1000)):
                self._receive(sub, round_id, got, rows)
        incoming = {}
        for j in self.neighbors:
            dist, sugg = got.get((j, Kind.DIST)), got.get((j, Kind.SUGG))
            if dist is None or sugg is None:
                self.gaps += 1
                log.warning("agent %d: round %d: no %s from neighbour %d within %.0fs (communication gap)",
                            self.me, round_id, "DIST" if dist is None else "SUGG", j, deadline_s)
                continue
            incoming[j] = Incoming(probs=dist.body["probs"], suggestion=sugg.body["probs"],
                                   actions=dist.body.get("actions"), behaviour=dist.body.get("behaviour"))
        return incoming

    def _receive(self, sub: zmq.Socket, round_id: int, got: dict, rows: int) -> None:
        j = self.subs[sub]
        parts = sub.recv_multipart()
        if len(parts) != 2:
            self.inbox.drop("invalid", f"{len(parts)} frames from neighbour {j}")
            return
        topic, frame = parts
        try:
            kind_name, topic_src, topic_dst = parse_topic(topic)
        except ProtocolError as err:
            self.inbox.drop("invalid", f"topic from neighbour {j}: {err}")
            return
        kind = Kind.DIST if kind_name == "dist" else Kind.SUGG
        msg = self.inbox.accept(frame, kinds={kind}, src=j, origin=f"neighbour {j}")
        if msg is None:
            return
        problem = self._check(msg, topic_src, topic_dst, rows)
        if problem:
            self.inbox.drop("invalid", f"{kind.value} from neighbour {j}: {problem}")
        elif msg.round < round_id or (msg.round == round_id and (j, kind) in got):
            self.inbox.drop("stale", f"{kind.value} round {msg.round} from neighbour {j} (now {round_id})")
        elif msg.round > round_id:
            self.early.setdefault(msg.round, {})[(j, kind)] = msg
        else:
            got[(j, kind)] = msg

    def _check(self, msg: Message, topic_src: int, topic_dst: int | None, rows: int) -> str | None:
        """Shape and addressing checks against this run's spaces (the codec checks the rest)."""
        if topic_src != msg.src:
            return f"topic says src {topic_src}, message says {msg.src}"
        probs: np.ndarray = msg.body["probs"]
        if probs.shape != (rows, self.n_actions):
            return f"probs shape {probs.shape}, expected {(rows, self.n_actions)}"
        if msg.kind is Kind.SUGG and (msg.body["to"] != self.me or topic_dst != self.me):
            return f"suggestion addressed to {msg.body['to']}, not to {self.me}"
        return None

    def close(self) -> None:
        for sub in self.subs:
            sub.close()

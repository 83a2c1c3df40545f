"""Which of its neighbours' round messages an agent keeps: the same rules over ZeroMQ and in memory.

Round r's messages are kept once per (neighbour, kind); a message of a later round is kept for that round;
an earlier round's, or a second copy, is dropped as stale. When the round ends (all expected kinds in, or
the deadline), a neighbour still missing something is a communication gap: the learner drops its terms
for the round, and the neighbour is 'silent' (waited for only briefly) until a round of it is complete
again. `agent/peer_link.py` feeds this from its SUB sockets; `MemoryNetwork` from the senders' `Outgoing`.
"""

from __future__ import annotations

import logging
from typing import Any

from agent.exchange import Outgoing, Received
from protocol.transport.inbox import Inbox
from protocol.wire.messages import Kind

Got = dict[tuple[int, Kind], Any]  # (neighbour, kind) -> body, for the round under way


class RoundBook:
    """Agent `me`'s bookkeeping of round messages across rounds."""

    def __init__(self, me: int, inbox: Inbox, log: logging.Logger):
        self.me = me
        self.inbox = inbox
        self.log = log
        self.early: dict[int, Got] = {}  # a later round -> what already came for it
        self.silent: set[int] = set()  # neighbours that missed their last round
        self.gaps = 0

    def begin(self, round_id: int) -> Got:
        """The round's messages so far: those that came early."""
        return self.early.pop(round_id, {})

    def offer(self, got: Got, round_id: int, j: int, kind: Kind, msg_round: int, body: Any) -> None:
        """A valid `kind` message of round `msg_round` from neighbour j, while round `round_id` is under way."""
        if msg_round < round_id or (msg_round == round_id and (j, kind) in got):
            self.inbox.drop("stale", f"{kind.value} round {msg_round} from neighbour {j} (now {round_id})")
        elif msg_round > round_id:
            self.early.setdefault(msg_round, {})[(j, kind)] = body
        else:
            got[(j, kind)] = body

    def awaited(self, expect: dict[int, frozenset[Kind]]) -> set[tuple[int, Kind]]:
        """What the round waits for in full: the expected kinds of every neighbour that is not silent."""
        return {(j, k) for j, kinds in expect.items() if j not in self.silent for k in kinds}

    def settle(self, round_id: int, expect: dict[int, frozenset[Kind]], got: Got, deadline_s: float) -> Received:
        """The round is over: each expected neighbour's bodies; a neighbour missing any is a gap (and silent)."""
        received: Received = {}
        for j, kinds in sorted(expect.items()):
            missing = sorted(k.value for k in kinds if (j, k) not in got)
            if missing:
                self.gaps += 1
                if j not in self.silent:
                    self.log.warning("agent %d: round %d: no %s from neighbour %d within %.0fs (communication gap; "
                                     "not waiting for it again until it is back)", self.me, round_id,
                                     "/".join(missing), j, deadline_s)
                self.silent.add(j)
            elif j in self.silent:
                self.log.info("agent %d: neighbour %d is back (round %d)", self.me, j, round_id)
                self.silent.discard(j)
            received[j] = {k: got[(j, k)] for k in kinds if (j, k) in got}
        return received


class MemoryNetwork:
    """The exchange delivered in memory, for `ss-sim`: every agent's round messages reach their addressees
    through each addressee's RoundBook, as over ZeroMQ. `deliver` is the network: by default every message
    arrives once, in its round; tests pass one that loses, repeats or delays messages."""

    def __init__(self, books: dict[int, RoundBook], neighbors: dict[int, tuple[int, ...]]):
        self.books = books
        self.neighbors = neighbors

    def exchange(self, round_id: int, outgoing: dict[int, Outgoing],
                 expect: dict[int, dict[int, frozenset[Kind]]]) -> dict[int, Received]:
        """Round `round_id`: each agent's Received, given what everyone sent and what each expects."""
        received = {}
        for i, book in self.books.items():
            got = book.begin(round_id)
            for j, kind, msg_round, body in self.deliver(i, round_id, outgoing):
                book.offer(got, round_id, j, kind, msg_round, body)
            received[i] = book.settle(round_id, expect[i], got, 0.0)
        return received

    def deliver(self, i: int, round_id: int, outgoing: dict[int, Outgoing]) -> list[tuple[int, Kind, int, Any]]:
        """(sender, kind, round, body) of every message that reaches agent i this round."""
        return [(j, kind, round_id, body) for j in self.neighbors[i]
                for kind, body in sorted(outgoing[j].to(i).items())]

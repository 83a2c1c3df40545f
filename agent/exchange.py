"""What agents exchange each round, and the in-memory router that `ss-sim` uses.

A round's payload is message bodies by kind: some published to every subscriber (SS's DIST, VS's
ADV, VPS's CRITIC_PARAMS), some addressed to one neighbour (SS's SUGG for j). Array rows are
time-major over the rollout: row r = t * B + b, R = T * B. The ZeroMQ implementation of the same
exchange is `agent/peer_link.py`; both hand the learner exactly these bodies, which is why `ss-sim`
and `ss-cluster` compute bit-identical results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol.messages import Kind

Body = dict[str, Any]
Received = dict[int, dict[Kind, Body]]  # neighbour j -> the bodies j sent us this round, by kind


@dataclass
class Outgoing:
    """What one agent sends in one round."""

    broadcast: dict[Kind, Body] = field(default_factory=dict)  # to every neighbour (one publication)
    addressed: dict[int, dict[Kind, Body]] = field(default_factory=dict)  # j -> bodies for j only


@dataclass(frozen=True)
class RoundKinds:
    """The kinds a round carries from each neighbour: a neighbour is complete when all have arrived."""

    broadcast: frozenset[Kind] = frozenset()
    addressed: frozenset[Kind] = frozenset()

    @property
    def all(self) -> frozenset[Kind]:
        return self.broadcast | self.addressed


def route_in_memory(outgoing: dict[int, Outgoing], neighbors: dict[int, tuple[int, ...]]) -> dict[int, Received]:
    """Deliver every agent's round messages to its neighbours, as the network would."""
    inboxes: dict[int, Received] = {i: {} for i in neighbors}
    for i, nbrs in neighbors.items():
        for j in nbrs:
            sent = outgoing[j]
            bodies = {**sent.broadcast, **sent.addressed.get(i, {})}
            if bodies:
                inboxes[i][j] = bodies
    return inboxes

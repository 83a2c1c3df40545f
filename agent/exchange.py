"""What agents exchange each round.

A round's payload is message bodies by kind: some published to every subscriber (SS's DIST, VS's
ADV, VPS's CRITIC_PARAMS), some addressed to one neighbour (SS's SUGG for j). Array rows are
time-major over the rollout: row r = t * B + b, R = T * B. The exchange over ZeroMQ is
`agent/peer_link.py`, in memory `agent/rounds.py`'s MemoryNetwork; both keep messages by the same
rules (RoundBook) and hand the learner exactly these bodies, which is why `ss-sim` and `ss-cluster`
compute bit-identical results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol.wire.messages import Kind

Body = dict[str, Any]
Received = dict[int, dict[Kind, Body]]  # neighbour j -> the bodies j sent us this round, by kind


@dataclass
class Outgoing:
    """What one agent sends in one round."""

    broadcast: dict[Kind, Body] = field(default_factory=dict)  # to every neighbour (one publication)
    addressed: dict[int, dict[Kind, Body]] = field(default_factory=dict)  # j -> bodies for j only

    def to(self, j: int) -> dict[Kind, Body]:
        """What neighbour j receives of it: the broadcast bodies and those addressed to j."""
        return {**self.broadcast, **self.addressed.get(j, {})}


@dataclass(frozen=True)
class RoundKinds:
    """The kinds a round carries from each neighbour: a neighbour is complete when all have arrived."""

    broadcast: frozenset[Kind] = frozenset()
    addressed: frozenset[Kind] = frozenset()

    @property
    def all(self) -> frozenset[Kind]:
        return self.broadcast | self.addressed

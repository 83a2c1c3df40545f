"""What agents exchange each round, and the in-memory router that `ss-sim` uses.

Rows are time-major over the rollout: row r = t * B + b for step t of parallel world b, R = T * B.
The ZeroMQ implementation of the same exchange lives in `agent/peer_link.py`; both hand the learner
exactly these arrays, which is why `ss-sim` and `ss-cluster` compute bit-identical results.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Outgoing:
    """What agent i publishes in one exchange round."""

    probs: np.ndarray  # [R, A_i] float32: pi_ii(.|o_i), its current action distribution (DIST)
    actions: np.ndarray | None  # [R] int64: a_i, first round of an update only (DIST)
    behaviour: np.ndarray | None  # [R] float32: pi_ii_old(a_i|o_i) at acting time, first round only
    suggestions: dict[int, np.ndarray] = field(default_factory=dict)  # j -> [R, A_j] pi_ij(.|o_i) (SUGG)


@dataclass
class Incoming:
    """What agent i received from neighbour j in one round (j's DIST and j's SUGG for i)."""

    probs: np.ndarray  # [R, A_j] float32: P_jj
    suggestion: np.ndarray  # [R, A_i] float32: S_ji = pi_ji(.|o_j)
    actions: np.ndarray | None = None  # [R] int64: a_j (first round)
    behaviour: np.ndarray | None = None  # [R] float32: pi_jj_old(a_j|o_j) (first round)


def route_in_memory(
    outgoing: dict[int, Outgoing], candidates: dict[int, tuple[int, ...]]
) -> dict[int, dict[int, Incoming]]:
    """Deliver every agent's round messages to its candidate neighbours, as the network would."""
    inboxes: dict[int, dict[int, Incoming]] = {i: {} for i in candidates}
    for i, cands in candidates.items():
        for j in cands:
            sent = outgoing[j]
            inboxes[i][j] = Incoming(
                probs=sent.probs,
                suggestion=sent.suggestions[i],
                actions=sent.actions,
                behaviour=sent.behaviour,
            )
    return inboxes

"""Fault-free delivery of one exchange round for learner-level tests: every message once, to every neighbour,
whatever it expects (the runtimes deliver through agent/rounds.py, which also applies expectations)."""

from __future__ import annotations

from agent.exchange import Outgoing, Received


def route_in_memory(outgoing: dict[int, Outgoing], neighbors: dict[int, tuple[int, ...]]) -> dict[int, Received]:
    """Deliver every agent's round messages to its neighbours."""
    inboxes: dict[int, Received] = {i: {} for i in neighbors}
    for i, nbrs in neighbors.items():
        for j in nbrs:
            bodies = outgoing[j].to(i)
            if bodies:
                inboxes[i][j] = bodies
    return inboxes

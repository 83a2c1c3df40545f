"""Neighbourhood protocols of the paper's appendix A.4, computed identically by every agent.

- `partners`: in each exchange round every agent picks m of its neighbours at random. The draw for
  (round, agent) comes from the run seed alone, so agent i can tell, without asking, whether neighbour
  j picked it (and so whether j wants i's suggestion this round).
- `communicates`: with `comm_every = k` agents exchange only every k-th update; in between they
  update independently (their neighbours' terms and xi_N factors are dropped, by design, not as gaps).
"""

from __future__ import annotations

import numpy as np

PARTNER_STREAM = 0x5EED  # keeps the partner draws apart from every other random stream of the run


def partners(seed: int, round_id: int, agent: int, neighbors: tuple[int, ...], m: int) -> frozenset[int]:
    """The neighbours `agent` exchanges with in round `round_id`: all of them if m == 0 or m >= degree."""
    if m == 0 or m >= len(neighbors):
        return frozenset(neighbors)
    rng = np.random.default_rng(np.random.SeedSequence([seed, PARTNER_STREAM, round_id, agent]))
    return frozenset(int(j) for j in rng.choice(np.asarray(neighbors), size=m, replace=False))


def communicates(update: int, every: int) -> bool:
    """Whether update number `update` (0-based) has exchange rounds."""
    return update % every == 0

"""Who exchanges with whom, and the neighbour masks each agent sees.

The static graph comes from the config (`neighbors`, or the agents' `--neighbors`), else from the
world's candidates; a world with distance-based neighbourhoods (predation) then switches candidates
on and off per step with masks, which are restricted here to each agent's neighbours.
"""

from __future__ import annotations

import numpy as np

from protocol.run.config import RunConfig
from protocol.wire.spec import WorldSpec


def resolve_neighbors(config: RunConfig, spec: WorldSpec) -> dict[int, tuple[int, ...]]:
    """Neighbour ids per agent: none for the algorithms that share nothing with peers (IPPO, IMR, CL), else
    config.neighbors if given, else the world's candidates."""
    if not config.algorithm.peers:
        return {i: () for i in range(spec.n_agents)}
    if config.neighbors:
        return {i: tuple(sorted(config.neighbors.get(i, ()))) for i in range(spec.n_agents)}
    return {i: spec.candidates[i] for i in range(spec.n_agents)}


def project_mask(world_candidates: tuple[int, ...], mask: np.ndarray, neighbors: tuple[int, ...]) -> np.ndarray:
    """Mask [B, len(neighbors)]: the world's mask column for each neighbour (True if the world has no rule for it)."""
    out = np.ones((mask.shape[0], len(neighbors)), dtype=bool)
    for col, j in enumerate(neighbors):
        if j in world_candidates:
            out[:, col] = mask[:, world_candidates.index(j)]
    return out

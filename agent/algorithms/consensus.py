"""Consensus on parameter vectors with Metropolis weights (VPS, PS; Zhang et al. 2018, Zhang & Zavlanos 2019).

W_ij = 1 / (1 + max(d_i, d_j)) for neighbours j of i, W_ii = 1 - sum_{j != i} W_ij, d the static degree
in the run's graph: W is symmetric and doubly stochastic, so repeated consensus on a connected graph
converges to the average. Every agent knows every degree, so each computes its own row alone.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from agent.exchange import Body
from agent.ppo import received_array

Graph = dict[int, tuple[int, ...]]


def metropolis_row(graph: Graph, i: int) -> dict[int, float]:
    """Row i of W: {i: W_ii, j: W_ij for each neighbour j}."""
    d_i = len(graph[i])
    row = {j: 1.0 / (1 + max(d_i, len(graph[j]))) for j in graph[i]}
    return {i: 1.0 - sum(row.values()), **row}


def consensus(own: torch.Tensor, received: dict[int, torch.Tensor], row: dict[int, float], i: int) -> torch.Tensor:
    """theta_i <- sum_j W_ij theta_j over i and the neighbours in `received`; the weights of the ones
    missing (communication gaps) drop out and the rest are renormalised to sum to 1."""
    present = [i, *sorted(j for j in received if j in row and j != i)]
    total = sum(row[j] for j in present)
    mixed = sum(row[j] / total * (own if j == i else received[j]).double() for j in present)
    return mixed.to(own.dtype)


def flat(module: nn.Module) -> torch.Tensor:
    """The module's parameters as one detached float32 vector (in `parameters()` order)."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def load_flat(module: nn.Module, vector: torch.Tensor) -> None:
    """Overwrite the module's parameters in place from `vector` (inverse of `flat`); optimiser state stays."""
    if vector.numel() != sum(p.numel() for p in module.parameters()):
        raise ValueError(f"parameter vector of {vector.numel()} values for a module of "
                         f"{sum(p.numel() for p in module.parameters())}")
    offset = 0
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(vector[offset:offset + p.numel()].view_as(p))
            offset += p.numel()


def mix_parameters(module: nn.Module, bodies: dict[int, Body], row: dict[int, float], i: int) -> None:
    """Consensus step of `module` with the `params` vectors neighbours sent (j -> message body)."""
    own = flat(module)
    theirs = {j: received_array(body["params"], tuple(own.shape), np.float32, f"parameters from {j}", own.device)
              for j, body in bodies.items()}
    load_flat(module, consensus(own, theirs, row, i))

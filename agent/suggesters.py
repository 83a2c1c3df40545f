"""Agent i's suggestion nets pi_ij(.|o_i), one distribution for each candidate neighbour j (paper eq. 16),
in the three forms `--suggester` names (protocol/run/config.py):

- `SuggestionNets` ("dense" and "sparse"): a policy net of its own per j, as in the paper. "dense" runs it on
  every row of the rollout; "sparse" only on the rows where j is a neighbour (the learner passes them).
- `SharedSuggester` ("shared"): one trunk over o_i for every j and a linear head per j, the paper's
  future-work direction; a round runs the trunk and all heads once, on every row, as a few tensor ops.

A round computes `features(obs)` once for all j (the shared trunk's pass; the observations themselves for
separate nets); then `SuggestionNets.logits(features, j, rows)` is pi_ij's logits at `rows` (None: every
row), and `SharedSuggester.heads(features)` every pi_ij's at every row.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from agent.nets import PolicyNet, mlp


class SuggestionNets(nn.ModuleDict):
    """A PolicyNet per candidate j, keyed str(j) (the checkpoint layout of every release)."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, hidden: tuple[int, ...],
                 candidates: tuple[int, ...]):
        super().__init__({str(j): PolicyNet(obs_shape, n_actions, hidden) for j in candidates})

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        return obs

    def logits(self, obs: torch.Tensor, j: int, rows: torch.Tensor | None) -> torch.Tensor:
        return self[str(j)].body(obs if rows is None else obs[rows])


class SharedSuggester(nn.Module):
    """One trunk (the policy net's layers up to its last hidden layer) and a linear head per candidate, the
    heads stacked in one tensor so that a round computes every pi_ij at once: heads(features) [R, M, A]."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, hidden: tuple[int, ...],
                 candidates: tuple[int, ...]):
        super().__init__()
        self.trunk = mlp(math.prod(obs_shape), hidden, n_actions)[:-1]  # ends with the last hidden ReLU
        width, bound = hidden[-1], 1 / math.sqrt(hidden[-1])  # nn.Linear's default initialisation
        self.weight = nn.Parameter(torch.empty(len(candidates), width, n_actions).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(len(candidates), n_actions).uniform_(-bound, bound))

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        return self.trunk(obs)

    def heads(self, features: torch.Tensor) -> torch.Tensor:
        """Every candidate's logits at every row: [R, M, A] (candidate m = the m-th of `candidates`)."""
        return torch.einsum("rh,mha->rma", features, self.weight) + self.bias

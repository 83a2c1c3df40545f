"""Agent i's suggestion nets pi_ij(.|o_i), one distribution for each candidate neighbour j (paper eq. 16),
in the three forms `--suggester` names (protocol/run/config.py):

- `SuggestionNets` ("dense" and "sparse"): a policy net of its own per j, as in the paper. "dense" runs it on
  every row of the rollout; "sparse" only on the rows where j is a neighbour (the learner passes them).
- `SharedSuggester` ("shared"): one trunk over o_i for every j and a linear head per j, the paper's
  future-work direction; the trunk runs once per round on every row, each head on j's rows only.

Both answer `logits(features(obs), j, rows)`: pi_ij's logits at `rows` of obs (None: every row); a round
computes `features` once for all j (the shared trunk's pass; the observations themselves for separate nets).
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
    """One trunk (the policy net's layers up to its last hidden layer) and a linear head per candidate j."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, hidden: tuple[int, ...],
                 candidates: tuple[int, ...]):
        super().__init__()
        self.trunk = mlp(math.prod(obs_shape), hidden, n_actions)[:-1]  # ends with the last hidden ReLU
        self.heads = nn.ModuleDict({str(j): nn.Linear(hidden[-1], n_actions) for j in candidates})

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        return self.trunk(obs)

    def logits(self, features: torch.Tensor, j: int, rows: torch.Tensor | None) -> torch.Tensor:
        return self.heads[str(j)](features if rows is None else features[rows])

"""The agent's networks: a ReLU MLP, a softmax policy and a state-value critic.

Every net of agent i reads i's own observation, flattened; uint8 (image) observations are scaled
by 1/255 on the way in (`obs_tensor`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def pick_device(name: str) -> torch.device:
    """The device a config's `device` names, in this process: "auto" is CUDA if it is available here, else
    the CPU; "cuda" where none is available is a ValueError saying so."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available to this process "
                         "(torch.cuda.is_available() is False); use --device auto or cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def obs_tensor(obs: np.ndarray) -> torch.Tensor:
    """Observations [N, *obs_shape] -> float32 [N, prod(obs_shape)]; uint8 scaled by 1/255."""
    flat = torch.from_numpy(np.array(obs).reshape(len(obs), -1))
    if flat.dtype == torch.uint8:
        return flat.to(torch.float32) / 255.0
    return flat.to(torch.float32)


def sample(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One action per row of probs [N, A], drawn by inverse CDF on the float probabilities -> int64 [N]."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cdf[:, -1]
    return np.minimum((cdf <= u[:, None]).sum(axis=1), probs.shape[1] - 1).astype(np.int64)


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    """Linear layers with ReLU between them: in_dim -> *hidden -> out_dim."""
    sizes = (in_dim, *hidden)
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], out_dim))
    return nn.Sequential(*layers)


class PolicyNet(nn.Module):
    """pi(.|o): a categorical distribution over `n_actions` from a softmax of MLP logits."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, hidden: tuple[int, ...]):
        super().__init__()
        self.body = mlp(math.prod(obs_shape), hidden, n_actions)

    def log_probs(self, obs: torch.Tensor) -> torch.Tensor:
        """log pi(.|o) [N, A] for flattened observations [N, D]."""
        return torch.log_softmax(self.body(obs), dim=-1)

    def probs(self, obs: torch.Tensor) -> torch.Tensor:
        """pi(.|o) [N, A] for flattened observations [N, D]."""
        return torch.softmax(self.body(obs), dim=-1)


class ValueNet(nn.Module):
    """V(o): the agent's own state-value estimate."""

    def __init__(self, obs_shape: tuple[int, ...], hidden: tuple[int, ...]):
        super().__init__()
        self.body = mlp(math.prod(obs_shape), hidden, 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """V(o) [N] for flattened observations [N, D]."""
        return self.body(obs).squeeze(-1)

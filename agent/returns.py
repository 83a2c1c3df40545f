"""Advantages (GAE, paper eq. 17) and critic targets (eq. 18) on the agent's own reward.

Episode boundaries: `terminated` (a true end, and our worlds' fixed horizon T, the end of their task)
bootstraps nothing, so the target is the discounted return to the episode's end (eq. 18); `truncated`
(a cut of a longer task) bootstraps with V(next obs). A last row with neither flag bootstraps with
V(next obs) too. Rows after an agent's episode ended are padding: `valid_steps` gives the loss mask
that leaves them out. Advantages are returned raw: no mean-centring (it would flip signs and so the
indicator sets of eq. 14) and no std normalisation.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages A, critic targets G), both [T, B], from [T, B] inputs (flags bool).

    values[t] = V(o[t]), next_values[t] = V(o[t+1]) (the observation after step t).
    """
    alive = (~terminated).to(rewards.dtype)  # 0 where the episode truly ended: no bootstrap
    cont = (~(terminated | truncated)).to(rewards.dtype)  # 0 at any episode boundary
    advantages = torch.zeros_like(rewards)
    targets = torch.zeros_like(rewards)
    adv_next = torch.zeros_like(rewards[0])
    ret_next = next_values[-1]  # past the data: bootstrap with V(o[T])
    for t in reversed(range(rewards.shape[0])):
        # eq. 17: delta_t = r_t + gamma V(s_{t+1}) - V(s_t);  A_t = sum_l (gamma lam)^l delta_{t+l}
        delta = rewards[t] + gamma * alive[t] * next_values[t] - values[t]
        adv_next = delta + gamma * lam * cont[t] * adv_next
        advantages[t] = adv_next
        # eq. 18 target: G_t = sum_l gamma^l r_{t+l} up to the episode's end,
        # bootstrapped with V(o') at truncation
        following = torch.where(cont[t] > 0, ret_next, next_values[t])
        ret_next = rewards[t] + gamma * alive[t] * following
        targets[t] = ret_next
    return advantages, targets


def valid_steps(terminated: np.ndarray, truncated: np.ndarray) -> np.ndarray:
    """[T, B] bool loss mask: True where the step was played, False after the episode ended (padding)."""
    ended = np.logical_or(terminated, truncated)
    ended_before = np.zeros_like(ended)
    ended_before[1:] = np.logical_or.accumulate(ended, axis=0)[:-1]
    return ~ended_before


def team_flags(terminated: Sequence[np.ndarray], truncated: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(terminated, truncated) [T, B] of the team from each agent's [T, B] flags: the team's episode ends
    at the step where the last of its agents ends; it is truncated if any agent ending there was."""
    ended_by = np.logical_and.reduce([np.logical_or.accumulate(te | tr, axis=0)
                                      for te, tr in zip(terminated, truncated)])
    team_end = ended_by & ~np.concatenate([np.zeros_like(ended_by[:1]), ended_by[:-1]])
    any_truncated = np.logical_or.reduce(list(truncated))
    return team_end & ~any_truncated, team_end & any_truncated

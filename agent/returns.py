"""Advantages (GAE, paper eq. 17) and critic targets (eq. 18) on the agent's own reward.

Episode boundaries: `terminated` (a true end) bootstraps nothing; `truncated` (the time limit)
bootstraps with V(next obs). The last row of the data bootstraps with V(next obs) too. Advantages
are returned raw: no mean-centring (it would flip signs and so the indicator sets of eq. 14) and
no std normalisation.
"""

from __future__ import annotations

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

"""VS, value sharing (Du et al. 2022; paper section 5.2): each agent learns its own critic and, once per
episode batch, broadcasts its advantage sequence A_j[t] (kind ADV, round 0). Its policy then takes
PPO-clip steps on the mean advantage over itself and the neighbours present at each step.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from agent.exchange import Outgoing, Received, RoundKinds
from agent.neighbourhood import communicates
from agent.ppo import PPOLearner, received_array
from protocol.run.config import RunConfig
from protocol.wire.messages import Kind
from protocol.wire.spec import WorldSpec


def mean_advantage(own: torch.Tensor, others: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Per row t: (A_i[t] + sum_j m_j[t] A_j[t]) / (1 + sum_j m_j[t]), for (A_j [R], mask m_j [R]) pairs."""
    total, count = own, torch.ones_like(own)
    for adv, mask in others:
        total = total + mask * adv
        count = count + mask
    return total / count


class VSLearner(PPOLearner):
    """PPO on the neighbourhood's mean advantage; shares A_i (private) with its neighbours."""

    def __init__(self, agent_id: int, spec: WorldSpec, candidates: tuple[int, ...], config: RunConfig):
        super().__init__(agent_id, spec, candidates, config)
        self.policy_advantages: torch.Tensor | None = None  # this update's mean advantage, set in round 0

    def _exchanges(self, k: int) -> bool:
        return k == 0 and bool(self.candidates) and communicates(self.updates, self.config.comm_every)

    def subscriptions(self) -> RoundKinds:
        """ADV from every neighbour."""
        return RoundKinds(broadcast=frozenset({Kind.ADV})) if self.candidates else RoundKinds()

    def expected(self, k: int) -> dict[int, frozenset[Kind]]:
        """Round 0: every neighbour's ADV."""
        return {j: frozenset({Kind.ADV}) for j in self.candidates} if self._exchanges(k) else {}

    def outgoing(self, k: int) -> Outgoing:
        """Round 0: A_i [R] to every neighbour."""
        if not self._exchanges(k):
            return Outgoing()
        return Outgoing(broadcast={Kind.ADV: {"advantages": self._current().advantages.cpu().numpy().copy()}})

    def update_step(self, k: int, received: Received) -> None:
        """Round 0 averages the advantages received; every round takes a PPO step on that average."""
        u = self._current()
        self.count_gaps(k, received)
        if k == 0:
            R = len(u.advantages)
            others = [(received_array(received[j][Kind.ADV]["advantages"], (R,), np.float32, f"ADV from {j}", self.device),
                       u.masks[:, m])
                      for m, j in enumerate(self.candidates) if Kind.ADV in received.get(j, {})]
            self.policy_advantages = mean_advantage(u.advantages, others)
        self.step(self.ppo_terms(self.policy_advantages))

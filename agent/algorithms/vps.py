"""VPS, value-function parameter sharing (Zhang et al. 2018; paper section 5.2): every agent's critic starts
from the same parameters (seeded from the run seed alone) and learns from the agent's own reward; each
round it broadcasts the critic as its last step left it (kind CRITIC_PARAMS), and before its own step
mixes the neighbours' critics in by Metropolis consensus. Adam's state stays local. The policy is PPO on
the own advantage.
"""

from __future__ import annotations

import numpy as np
import torch

from agent.algorithms.consensus import flat, metropolis_row, mix_parameters
from agent.exchange import Outgoing, Received, RoundKinds
from agent.neighbourhood import communicates
from agent.nets import ValueNet
from agent.ppo import PPOLearner
from protocol.wire.messages import Kind

SHARED_CRITIC_STREAM = 0xC817C  # the run's one critic initialisation, apart from every agent's own seed


class VPSLearner(PPOLearner):
    """PPO with a critic kept in consensus with the neighbours' critics."""

    def build_nets(self) -> None:
        """V_i replaced by the run's shared initial critic (pi_ii stays agent i's own, as in IPPO)."""
        seed = np.random.SeedSequence([self.config.seed, SHARED_CRITIC_STREAM]).generate_state(1)[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.critic = ValueNet(self.spec.obs_shape, self.config.hidden)

    def _exchanges(self) -> bool:
        return bool(self.candidates) and communicates(self.updates, self.config.comm_every)

    def subscriptions(self) -> RoundKinds:
        """CRITIC_PARAMS from every neighbour."""
        return RoundKinds(broadcast=frozenset({Kind.CRITIC_PARAMS})) if self.candidates else RoundKinds()

    def expected(self, k: int) -> dict[int, frozenset[Kind]]:
        """Every round: every neighbour's critic."""
        return {j: frozenset({Kind.CRITIC_PARAMS}) for j in self.candidates} if self._exchanges() else {}

    def outgoing(self, k: int) -> Outgoing:
        """Every round: our critic's parameters, as the previous critic step left them."""
        if not self._exchanges():
            return Outgoing()
        return Outgoing(broadcast={Kind.CRITIC_PARAMS: {"params": flat(self.critic).cpu().numpy()}})

    def update_step(self, k: int, received: Received) -> None:
        """Consensus of the critic with the neighbours present, then one Adam step on PPO + critic loss."""
        self.count_gaps(k, received)
        bodies = {j: got[Kind.CRITIC_PARAMS] for j, got in received.items() if Kind.CRITIC_PARAMS in got}
        if bodies:
            mix_parameters(self.critic, bodies, metropolis_row(self.graph, self.agent_id), self.agent_id)
        self.step(self.ppo_terms(self._current().advantages))

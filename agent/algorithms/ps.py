"""PS, policy parameter sharing (Zhang & Zavlanos 2019; paper section 5.2): agent i keeps a copy pi^(i)_j of
every agent j's policy and acts with its copy of its own, pi^(i)_i. Once per episode batch (round 0) it
broadcasts its actions and behaviour probabilities (DIST) and all its copies (POLICY_PARAMS); it mixes the
neighbours' copies into its own by Metropolis consensus, then takes PPO-clip steps on the joint ratio

    r[t] = prod_{j in {i} + N_i(t)} pi^(i)_j(a_j|o_i) / beh_j(a_j|o_j)        (clipped as a whole)

with its own-reward advantage A_i; its critic is its own (no consensus). With no neighbours it is PPO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from agent.algorithms.consensus import flat, metropolis_row, mix_parameters
from agent.exchange import Outgoing, Received, RoundKinds
from agent.neighbourhood import communicates
from agent.nets import PolicyNet
from agent.ppo import PPOLearner, derived_seed, received_array
from agent.ss_loss import LossTerms, masked_mean, taken
from protocol.wire.messages import Kind


@dataclass(frozen=True)
class JointFactor:
    """Neighbour j's factor of the joint ratio; rows align with i's rollout."""

    logp: torch.Tensor  # [R, A] log pi^(i)_j(.|o_i): i's copy of j's policy (grad to that copy)
    actions: torch.Tensor  # [R] a_j, received
    behaviour: torch.Tensor  # [R] beh_j(a_j|o_j), received
    mask: torch.Tensor  # [R] 1.0 where j is i's neighbour at that step


def joint_ratio_loss(logp_own: torch.Tensor, actions: torch.Tensor, behaviour: torch.Tensor,
                     others: Sequence[JointFactor], advantages: torch.Tensor, clip_eps: float,
                     values: torch.Tensor, returns: torch.Tensor, value_coef: float,
                     valid: torch.Tensor) -> LossTerms:
    """-mean(min(r A, clip(r, 1-eps, 1+eps) A)) + value_coef * mean((V - G)^2), r the joint ratio;
    means over the valid rows."""
    A = advantages.detach()
    pi_own = logp_own.exp()
    ratio = taken(pi_own, actions) / behaviour.detach()
    one = torch.ones_like(A)
    for f in others:
        active = f.mask.detach() > 0
        beh_j = torch.where(active, f.behaviour.detach(), one)  # no 0/0 in inactive rows' grads
        ratio = ratio * torch.where(active, taken(f.logp.exp(), f.actions.detach()) / beh_j, one)
    surrogate = torch.min(ratio * A, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * A)
    value_loss = masked_mean((values - returns.detach()) ** 2, valid)
    entropy = masked_mean(-(pi_own * logp_own).sum(dim=1), valid)
    return LossTerms(total=-masked_mean(surrogate, valid) + value_coef * value_loss,
                     surrogate=float(masked_mean(surrogate.detach(), valid)), penalty=0.0,
                     value_loss=float(value_loss.detach()), entropy=float(entropy.detach()),
                     suggestion_sq_sum=0.0, suggestion_count=0)


class PSLearner(PPOLearner):
    """Copies of every agent's policy, trained on the joint ratio and kept in consensus."""

    KINDS = frozenset({Kind.DIST, Kind.POLICY_PARAMS})

    def build_nets(self) -> None:
        """pi^(i)_j for every agent j, starting from j's own initial policy (so every agent's copies of j
        agree at the start); pi^(i)_i is pi_ii itself."""
        copies: dict[str, nn.Module] = {}
        for j in range(self.spec.n_agents):
            if j == self.agent_id:
                copies[str(j)] = self.policy
                continue
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derived_seed(self.config.seed, j))  # j builds its pi_jj first from this seed
                copies[str(j)] = PolicyNet(self.spec.obs_shape, self.spec.n_actions, self.config.hidden)
        self.copies = nn.ModuleDict(copies)

    def nets(self) -> dict[str, nn.Module]:
        return {"copies": self.copies, "critic": self.critic}

    def _exchanges(self, k: int) -> bool:
        return k == 0 and bool(self.candidates) and communicates(self.updates, self.config.comm_every)

    def subscriptions(self) -> RoundKinds:
        """DIST and POLICY_PARAMS from every neighbour."""
        return RoundKinds(broadcast=self.KINDS) if self.candidates else RoundKinds()

    def expected(self, k: int) -> dict[int, frozenset[Kind]]:
        """Round 0: every neighbour's DIST and POLICY_PARAMS."""
        return {j: self.KINDS for j in self.candidates} if self._exchanges(k) else {}

    def outgoing(self, k: int) -> Outgoing:
        """Round 0: DIST (pi_ii(.|o_i) [R, A] as the schema requires, a_i, behaviour) and one POLICY_PARAMS
        holding all copies, owners 0..N-1 in order (`owner` names the sender, whose copies they are)."""
        if not self._exchanges(k):
            return Outgoing()
        u = self._current()
        with torch.no_grad():
            probs = self.policy.probs(u.obs).cpu().numpy()
        return Outgoing(broadcast={
            Kind.DIST: {"probs": probs, "actions": u.actions.cpu().numpy().copy(),
                        "behaviour": u.behaviour.cpu().numpy().copy()},
            Kind.POLICY_PARAMS: {"owner": self.agent_id, "params": flat(self.copies).cpu().numpy()},
        })

    def _factors(self, k: int, received: Received) -> list[JointFactor]:
        """The neighbours whose round-0 actions we hold (stored in round 0, for every round)."""
        u = self._current()
        R = len(u.actions)
        if k == 0:
            for j, got in received.items():
                if Kind.DIST in got:
                    u.neighbour_actions[j] = (
                        received_array(got[Kind.DIST]["actions"], (R,), np.int64, f"actions from {j}", self.device),
                        received_array(got[Kind.DIST]["behaviour"], (R,), np.float32, f"behaviour from {j}",
                                       self.device),
                    )
        factors = []
        for m, j in enumerate(self.candidates):
            if j in u.neighbour_actions:
                a_j, beh_j = u.neighbour_actions[j]
                factors.append(JointFactor(logp=self.copies[str(j)].log_probs(u.obs), actions=a_j,
                                           behaviour=beh_j, mask=u.masks[:, m]))
        return factors

    def update_step(self, k: int, received: Received) -> None:
        """Round 0: consensus of every copy with the neighbours'; then one Adam step on the joint ratio."""
        u = self._current()
        self.count_gaps(k, received)
        bodies = {j: got[Kind.POLICY_PARAMS] for j, got in received.items() if Kind.POLICY_PARAMS in got}
        if k == 0 and bodies:
            mix_parameters(self.copies, bodies, metropolis_row(self.graph, self.agent_id), self.agent_id)
        self.step(joint_ratio_loss(
            logp_own=self.policy.log_probs(u.obs), actions=u.actions, behaviour=u.behaviour,
            others=self._factors(k, received), advantages=u.advantages, clip_eps=self.config.clip_eps,
            values=self.critic(u.obs), returns=u.targets, value_coef=self.config.value_coef, valid=u.valid,
        ))

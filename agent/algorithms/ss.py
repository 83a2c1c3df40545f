"""Agent i's Suggestion Sharing learner (DESIGN.md section 3, paper eqs. 13-18): on the shared PPO core
(`agent/ppo.py`) it adds a suggestion head pi_ij for every candidate neighbour j and, once per episode
batch, runs K exchange rounds, each followed by one full-batch Adam step on the SS loss (eq. 16).
With no neighbours (`--algo ippo`) it is exactly IPPO.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from agent.exchange import Outgoing, Received, RoundKinds
from agent.neighbourhood import communicates, partners
from agent.nets import PolicyNet
from agent.ppo import PPOLearner, UpdateBatch, received_array
from agent.ss_loss import NeighbourTerms, ss_loss
from protocol.run.config import RunConfig
from protocol.wire.messages import Kind
from protocol.wire.spec import WorldSpec


class SSLearner(PPOLearner):
    """Agent i's nets (pi_ii, pi_ij for every candidate j, V_i), optimiser, RNG and rollout."""

    def __init__(self, agent_id: int, spec: WorldSpec, candidates: tuple[int, ...],
                 config: RunConfig):
        super().__init__(agent_id, spec, tuple(candidates) if config.algorithm.peers else (), config)
        self._round_logits: tuple[int, dict[str, torch.Tensor]] | None = None  # round k's forward passes

    def build_nets(self) -> None:
        """A suggestion head pi_ij per candidate j (after pi_ii and V_i, on agent i's seed)."""
        self.suggesters = nn.ModuleDict({
            str(j): PolicyNet(self.spec.obs_shape, self.spec.n_actions, self.config.hidden)
            for j in self.candidates
        })

    def nets(self) -> dict[str, nn.Module]:
        return {"policy": self.policy, "critic": self.critic, "suggesters": self.suggesters}

    # ---- the exchange: who sends what to whom in round k (neighbourhood protocols, paper A.4) ----

    def subscriptions(self) -> RoundKinds:
        """Every kind this learner may receive from a neighbour: DIST (to all) and SUGG (for us)."""
        if not self.candidates:
            return RoundKinds()
        return RoundKinds(broadcast=frozenset({Kind.DIST}), addressed=frozenset({Kind.SUGG}))

    def _partners(self, k: int, agent: int) -> frozenset[int]:
        """Whom `agent` exchanges with in round k of this update (none on an update without exchange)."""
        if not communicates(self.updates, self.config.comm_every):
            return frozenset()
        round_id = self.updates * self.config.iterations + k
        return partners(self.config.seed, round_id, agent, self.graph[agent], self.config.partners)

    def expected(self, k: int) -> dict[int, frozenset[Kind]]:
        """Neighbour j -> the kinds round k brings from j: DIST and SUGG from our partners, and in the
        first round every neighbour's DIST (its actions and behaviour, needed whenever it is a partner)."""
        if not communicates(self.updates, self.config.comm_every):
            return {}
        mine = self._partners(k, self.agent_id)
        expect = {j: frozenset({Kind.DIST, Kind.SUGG}) if j in mine else frozenset({Kind.DIST})
                  for j in self.candidates if j in mine or k == 0}
        return expect

    def outgoing(self, k: int) -> Outgoing:
        """Round k: DIST = pi_ii(.|o_i) [R, A] (+ a_i and behaviour if k == 0); SUGG pi_ij(.|o_i) to every
        neighbour j that picked us as a partner."""
        u = self._current()
        if not self.candidates or not communicates(self.updates, self.config.comm_every):
            return Outgoing()
        picked_by = [j for j in self.candidates if self.agent_id in self._partners(k, j)]
        if k > 0 and not picked_by:
            return Outgoing()
        # the forward passes this round's update repeats at the same parameters: kept for it (with grad)
        self._round_logits = (k, {"policy": self.policy.body(u.obs),
                                  **{str(j): self.suggesters[str(j)].body(u.obs) for j in picked_by}})
        probs = {name: torch.softmax(logits.detach(), dim=-1).numpy() for name, logits in self._round_logits[1].items()}
        dist: dict = {"probs": probs["policy"]}
        suggestions = {j: probs[str(j)] for j in picked_by}
        if k == 0:
            dist.update(actions=u.actions.numpy().copy(), behaviour=u.behaviour.numpy().copy())
        return Outgoing(broadcast={Kind.DIST: dist},
                        addressed={j: {Kind.SUGG: {"to": j, "probs": p}} for j, p in suggestions.items()})

    def _neighbour_terms(self, u: UpdateBatch, k: int, received: Received) -> list[NeighbourTerms]:
        """Our partners with data this round; a partner without data is a gap (counted)."""
        R, A = len(u.actions), self.spec.n_actions
        mine = self._partners(k, self.agent_id)
        terms = []
        for m, j in enumerate(self.candidates):
            dist = received.get(j, {}).get(Kind.DIST)
            sugg = received.get(j, {}).get(Kind.SUGG)
            if dist is not None and "actions" in dist:
                u.neighbour_actions[j] = (
                    received_array(dist["actions"], (R,), np.int64, f"actions from {j}"),
                    received_array(dist["behaviour"], (R,), np.float32, f"behaviour from {j}"),
                )
            if j not in mine:
                continue  # not a partner this round, by the protocol: no terms, no gap
            if dist is None or sugg is None or j not in u.neighbour_actions:
                u.gaps += 1  # communication gap: drop j's terms and xi_N factor this round
                continue
            a_j, beh_j = u.neighbour_actions[j]
            terms.append(NeighbourTerms(
                logp_ij=self._log_probs(k, str(j), self.suggesters[str(j)], u.obs),
                actions=a_j,
                behaviour=beh_j,
                probs=received_array(dist["probs"], (R, A), np.float32, f"P_jj from {j}"),
                suggestion=received_array(sugg["probs"], (R, A), np.float32, f"S_ji from {j}"),
                mask=u.masks[:, m],
            ))
        return terms

    def _log_probs(self, k: int, name: str, net: PolicyNet, obs: torch.Tensor) -> torch.Tensor:
        """log pi(.|o) of `net`, from round k's forward pass in `outgoing` when it made one (same parameters,
        same numbers: the pass is not repeated), else computed now."""
        kept = self._round_logits[1].get(name) if self._round_logits and self._round_logits[0] == k else None
        return torch.log_softmax(kept if kept is not None else net.body(obs), dim=-1)

    def update_step(self, k: int, received: Received) -> None:
        """One full-batch Adam step on the SS loss with round k's received messages."""
        u = self._current()
        logp_ii = self._log_probs(k, "policy", self.policy, u.obs)
        neighbours = self._neighbour_terms(u, k, received)
        self._round_logits = None
        self.step(ss_loss(
            logp_ii=logp_ii,
            actions=u.actions,
            behaviour=u.behaviour,
            advantages=u.advantages,
            kappa=u.kappa,
            rho=self.config.rho,
            neighbours=neighbours,
            clip_eps=self.config.clip_eps,
            values=self.critic(u.obs),
            returns=u.targets,
            value_coef=self.config.value_coef,
            valid=u.valid,
        ))

"""Agent i's Suggestion Sharing learner (DESIGN.md section 3, paper eqs. 13-18): on the shared PPO core
(`agent/ppo.py`) it adds a suggestion distribution pi_ij for every candidate neighbour j
(`agent/suggesters.py`) and, once per episode batch, runs K exchange rounds, each followed by one
full-batch Adam step on the SS loss (eq. 16). With no neighbours (`--algo ippo`) it is exactly IPPO.

Rows: neighbour j enters i's loss only at the rows of i's rollout where j is i's neighbour and i played.
With `--suggester dense` every message and suggestion pass covers every row (the paper's formulation);
with "sparse" and "shared" an agent computes and sends them only at the rows where the addressee is a
neighbour (a bool `rows` field marks which), and exchanges nothing with a neighbour it never met in the
batch. Neighbourhoods are symmetric (j is i's neighbour exactly when i is j's), so sender and addressee
agree on those rows without asking; a message that lacks a row its addressee needs is a gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agent.exchange import Body, Outgoing, Received, RoundKinds
from agent.neighbourhood import communicates, partners
from agent.ppo import PPOLearner, UpdateBatch, received_array
from agent.ss_loss import NeighbourTerms, ss_loss
from agent.suggesters import SharedSuggester, SuggestionNets
from protocol.run.config import RunConfig
from protocol.wire.messages import Kind
from protocol.wire.spec import WorldSpec

Rows = torch.Tensor | None  # int64 row indices of the rollout, increasing; None: every row


@dataclass
class RoundPass:
    """Round k's forward passes, at the parameters its update step then uses: computed once, kept with grad."""

    batch: UpdateBatch
    k: int
    features: torch.Tensor  # the suggesters' features of every row (the shared trunk's pass)
    logits: dict[str, tuple[Rows, torch.Tensor]]  # "policy" or str(j) -> (the rows computed, logits there)
    heads: torch.Tensor | None = None  # "shared": every candidate's logits at every row [R, M, A]


def spread(body: Body, key: str, shape: tuple[int, ...], dtype: type, what: str,
           device: torch.device) -> tuple[torch.Tensor, np.ndarray | None]:
    """body[key] over all R = shape[0] rows of the rollout (zeros at rows it lacks), on `device`, and the
    rows it holds (bool [R]; None: every row)."""
    marked = body.get("rows")
    if marked is None:
        return received_array(body[key], shape, dtype, what, device), None
    marked = np.asarray(marked, dtype=bool)
    full = np.zeros(shape, dtype=dtype)
    full[marked] = np.asarray(body[key], dtype=dtype).reshape(int(marked.sum()), *shape[1:])
    return torch.from_numpy(full).to(device), marked


class SSLearner(PPOLearner):
    """Agent i's nets (pi_ii, pi_ij for every candidate j, V_i), optimiser, RNG and rollout."""

    def __init__(self, agent_id: int, spec: WorldSpec, candidates: tuple[int, ...],
                 config: RunConfig):
        super().__init__(agent_id, spec, tuple(candidates) if config.algorithm.peers else (), config)
        self._round: RoundPass | None = None
        self.sparse = config.suggester != "dense"
        self.shared = config.suggester == "shared"
        self._column = {j: m for m, j in enumerate(self.candidates)}  # j -> its column of the masks
        self._near = torch.zeros(0, len(self.candidates), dtype=torch.bool)

    def build_nets(self) -> None:
        """pi_ij for every candidate j (after pi_ii and V_i, on agent i's seed)."""
        nets = SharedSuggester if self.config.suggester == "shared" else SuggestionNets
        self.suggesters = nets(self.spec.obs_shape, self.spec.n_actions, self.config.hidden, self.candidates)

    def nets(self) -> dict[str, torch.nn.Module]:
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

    def begin_update(self) -> None:
        super().begin_update()
        self._near = self._current().masks > 0  # bool [R, M]: candidate m is our neighbour at row r

    def _neighbour_rows(self, j: int) -> torch.Tensor:
        """bool [R]: the rows of this batch where candidate j is our neighbour."""
        return self._near[:, self._column[j]]

    def _met(self) -> list[int]:
        """The candidates we exchange with this update: all of them (dense), or those that were our neighbour
        at some row of the batch (sparse, shared)."""
        if not self.sparse:
            return list(self.candidates)
        met = self._near.any(dim=0).tolist()
        return [j for j, seen in zip(self.candidates, met) if seen]

    def expected(self, k: int) -> dict[int, frozenset[Kind]]:
        """Neighbour j -> the kinds round k brings from j: DIST and SUGG from our partners, and in the
        first round every neighbour's DIST (its actions and behaviour, needed whenever it is a partner)."""
        if not communicates(self.updates, self.config.comm_every):
            return {}
        mine = self._partners(k, self.agent_id)
        return {j: frozenset({Kind.DIST, Kind.SUGG}) if j in mine else frozenset({Kind.DIST})
                for j in self._met() if j in mine or k == 0}

    def outgoing(self, k: int) -> Outgoing:
        """Round k: DIST = pi_ii(.|o_i) (+ a_i and behaviour if k == 0); SUGG pi_ij(.|o_i) to every
        neighbour j that picked us as a partner."""
        u = self._current()
        if not self.candidates or not communicates(self.updates, self.config.comm_every):
            return Outgoing()
        met = self._met()
        picked_by = [j for j in met if self.agent_id in self._partners(k, j)]
        if not met or (k > 0 and not picked_by):
            return Outgoing()
        sent = {j: self._neighbour_rows(j) for j in picked_by} if self.sparse else {}
        probs = {"policy": self._probs(k, "policy")}
        for j in picked_by:
            probs[str(j)] = self._probs(k, str(j), torch.nonzero(sent[j]).squeeze(1) if self.sparse else None)
        dist: Body = {"probs": probs["policy"]}
        if k == 0:
            dist.update(actions=u.actions.cpu().numpy().copy(), behaviour=u.behaviour.cpu().numpy().copy())
        suggestions: dict[int, Body] = {j: {"to": j, "probs": probs[str(j)]} for j in picked_by}
        if self.sparse:  # every row some neighbour we met needs; each suggestion at its addressee's rows
            union = torch.stack([self._neighbour_rows(j) for j in met]).any(dim=0).cpu().numpy()
            dist = {key: value[union] for key, value in dist.items()} | {"rows": union}
            for j in picked_by:
                suggestions[j]["rows"] = sent[j].cpu().numpy()
        return Outgoing(broadcast={Kind.DIST: dist},
                        addressed={j: {Kind.SUGG: body} for j, body in suggestions.items()})

    # ---- round k's forward passes, computed once and shared by the messages and the update ----

    def _pass(self, k: int) -> RoundPass:
        u = self._current()
        if self._round is None or self._round.batch is not u or self._round.k != k:
            self._round = RoundPass(u, k, self.suggesters.features(u.obs), {})
        return self._round

    def _logits(self, k: int, name: str, rows: Rows = None) -> tuple[Rows, torch.Tensor]:
        """(rows, logits at them) of pi_ii ("policy") or pi_ij (str(j)) in round k: this round's pass if it
        made one (same parameters, same numbers), else computed now at `rows`."""
        p = self._pass(k)
        if name not in p.logits:
            if name == "policy":
                p.logits[name] = (None, self.policy.body(p.batch.obs))
            elif self.shared:
                column = self._heads(p)[:, self._column[int(name)]]
                p.logits[name] = (rows, column if rows is None else column[rows])
            else:
                p.logits[name] = (rows, self.suggesters.logits(p.features, int(name), rows))
        return p.logits[name]

    def _heads(self, p: RoundPass) -> torch.Tensor:
        if p.heads is None:
            p.heads = self.suggesters.heads(p.features)
        return p.heads

    def _probs(self, k: int, name: str, rows: Rows = None) -> np.ndarray:
        return torch.softmax(self._logits(k, name, rows)[1].detach(), dim=-1).cpu().numpy()

    def _log_probs(self, k: int, name: str, rows: torch.Tensor) -> torch.Tensor:
        """log pi(.|o_i) at `rows` of the rollout."""
        computed, logits = self._logits(k, name, rows if self.sparse else None)
        logp = torch.log_softmax(logits, dim=-1)
        return logp[rows if computed is None else torch.searchsorted(computed, rows)]

    # ---- the update ---------------------------------------------------------------------------

    def _neighbour_terms(self, u: UpdateBatch, k: int, received: Received) -> list[NeighbourTerms]:
        """Our partners with data this round; a partner without data is a gap (counted)."""
        R, A = len(u.actions), self.spec.n_actions
        mine = self._partners(k, self.agent_id)
        found: list[tuple] = []  # (j, rows, a_j, pi_jj_old(a_j), P_jj, S_ji), each at the rows
        for j in self._met():
            dist = received.get(j, {}).get(Kind.DIST)
            sugg = received.get(j, {}).get(Kind.SUGG)
            if dist is not None and "actions" in dist:  # round 0's: a_j and pi_jj_old(a_j|o_j)
                u.neighbour_actions[j] = (spread(dist, "actions", (R,), np.int64, f"actions from {j}", self.device),
                                          spread(dist, "behaviour", (R,), np.float32, f"behaviour from {j}",
                                                 self.device))
            if j not in mine:
                continue  # not a partner this round, by the protocol: no terms, no gap
            if dist is None or sugg is None or j not in u.neighbour_actions:
                u.gaps += 1  # communication gap: drop j's terms and xi_N factor this round
                continue
            rows = torch.nonzero(self._neighbour_rows(j) & (u.valid > 0)).squeeze(1)
            have = (*u.neighbour_actions[j], spread(dist, "probs", (R, A), np.float32, f"P_jj from {j}", self.device),
                    spread(sugg, "probs", (R, A), np.float32, f"S_ji from {j}", self.device))
            if any(marked is not None and not marked[rows.cpu().numpy()].all() for _, marked in have):
                u.gaps += 1  # a message without a row we need counts as missing
                continue
            found.append((j, rows, *(values[rows] for values, _ in have)))
        if not self.sparse:  # one term per neighbour, in candidate order: the paper's formulation, as ever
            return [NeighbourTerms(rows=rows, logp_ij=self._log_probs(k, str(j), rows), actions=a_j,
                                   behaviour=beh_j, probs=P_jj, suggestion=S_ji)
                    for j, rows, a_j, beh_j, P_jj, S_ji in found]
        return self._layers(k, found)

    def _layers(self, k: int, found: list[tuple]) -> list[NeighbourTerms]:
        """Every (row, neighbour) pair of `found`, regrouped into terms that each hold at most one neighbour
        per row: term L holds every row's L-th neighbour. The loss (eq. 16) is the same sum; its loop runs
        over the most neighbours any row has instead of over every candidate."""
        if not found:
            return []
        rows = torch.cat([f[1] for f in found])
        if self.shared:  # one gather from every head's logits
            columns = torch.cat([torch.full_like(f[1], self._column[f[0]]) for f in found])
            logp = torch.log_softmax(self._heads(self._pass(k)), dim=-1)[rows, columns]
        else:
            logp = torch.cat([self._log_probs(k, str(f[0]), f[1]) for f in found])
        actions, behaviour, probs, suggestion = (torch.cat([f[i] for f in found]) for i in range(2, 6))
        order = torch.argsort(rows, stable=True)
        by_row = rows[order]
        rank = torch.empty_like(order)  # each pair's place among the pairs of its row
        rank[order] = torch.arange(len(order), device=rows.device) - torch.searchsorted(by_row, by_row)
        terms = []
        for layer in range(int(rank.max()) + 1):
            at = torch.nonzero(rank == layer).squeeze(1)
            terms.append(NeighbourTerms(rows=rows[at], logp_ij=logp[at], actions=actions[at],
                                        behaviour=behaviour[at], probs=probs[at], suggestion=suggestion[at]))
        return terms

    def update_step(self, k: int, received: Received) -> None:
        """One full-batch Adam step on the SS loss with round k's received messages."""
        u = self._current()
        logp_ii = torch.log_softmax(self._logits(k, "policy")[1], dim=-1)
        neighbours = self._neighbour_terms(u, k, received)
        self._round = None
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

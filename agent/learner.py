"""Agent i's socket-free learner: acts with pi_ii, and once per episode batch runs K exchange
rounds, each followed by one full-batch Adam step on the SS loss (DESIGN.md section 3).

Drive it as: act/record for T steps -> begin_update -> for k < K: outgoing(k), exchange,
update_step(k, received) -> end_update. The in-process simulator and the agent process both do so,
and the learner's numbers depend only on (config, agent id, candidates) and what it is handed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from agent.buffer import RolloutBuffer, rows
from agent.exchange import Outgoing, Received, RoundKinds
from agent.neighbourhood import communicates, partners
from agent.nets import PolicyNet, ValueNet, obs_tensor
from agent.returns import gae
from agent.ss_loss import NeighbourTerms, ss_loss
from protocol.config import RunConfig
from protocol.messages import Kind
from protocol.spec import WorldSpec
from protocol.topology import resolve_neighbors


def derived_seed(seed: int, agent_id: int) -> int:
    """The agent's own seed, independent of every other agent's."""
    return int(np.random.SeedSequence([seed, agent_id]).generate_state(1)[0])


def received_array(x: np.ndarray, shape: tuple[int, ...], dtype: type, what: str) -> torch.Tensor:
    """A writable tensor copy of a received (possibly read-only) array, checked against `shape`."""
    arr = np.array(x, dtype=dtype)
    if arr.shape != shape:
        raise ValueError(f"{what}: expected shape {shape}, got {arr.shape}")
    return torch.from_numpy(arr)


@dataclass
class _Update:
    """One update's rows (time-major, R = T * B) and what its rounds accumulate."""

    obs: torch.Tensor  # [R, D] flattened, scaled
    actions: torch.Tensor  # [R] a_i
    behaviour: torch.Tensor  # [R] pi_ii_old(a_i|o_i)
    masks: torch.Tensor  # [R, M] 1.0 where candidate m is a neighbour
    advantages: torch.Tensor  # [R] A_i (eq. 17)
    targets: torch.Tensor  # [R] G_i (eq. 18)
    kappa: torch.Tensor  # mean |A_i|
    mean_reward: float
    neighbour_actions: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    rounds: list[dict[str, float]] = field(default_factory=list)
    sugg_sum: float = 0.0
    sugg_count: int = 0
    gaps: int = 0


class Learner:
    """Agent i's nets (pi_ii, pi_ij for every candidate j, V_i), optimiser, RNG and rollout."""

    def __init__(self, agent_id: int, spec: WorldSpec, candidates: tuple[int, ...],
                 config: RunConfig):
        self.agent_id = agent_id
        self.spec = spec
        self.config = config
        self.candidates: tuple[int, ...] = () if config.algo == "ippo" else tuple(candidates)
        # everyone's neighbours, so the partner draws of the neighbours can be reproduced here
        self.graph = {**resolve_neighbors(config, spec), agent_id: self.candidates}
        seed = derived_seed(config.seed, agent_id)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # pi_ii and V_i first, so an IPPO learner starts from the same nets as an SS one
            self.policy = PolicyNet(spec.obs_shape, spec.n_actions, config.hidden)
            self.critic = ValueNet(spec.obs_shape, config.hidden)
            self.suggesters = nn.ModuleDict({
                str(j): PolicyNet(spec.obs_shape, spec.n_actions, config.hidden)
                for j in self.candidates
            })
        self.optimizer = torch.optim.Adam([
            {"params": [*self.policy.parameters(), *self.suggesters.parameters()],
             "lr": config.actor_lr},
            {"params": list(self.critic.parameters()), "lr": config.critic_lr},
        ])
        self.rng = np.random.default_rng(seed)
        self.updates = 0
        self.buffer = RolloutBuffer()
        self._update: _Update | None = None

    # ---- acting -------------------------------------------------------------------------------

    def act(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Sample a_i ~ pi_ii(.|o_i) in each of the B worlds; record o, mask, a_i, behaviour."""
        with torch.no_grad():
            probs = self.policy.probs(obs_tensor(obs)).numpy()
        cdf = np.cumsum(probs, axis=1)
        u = self.rng.random(len(probs)) * cdf[:, -1]  # inverse CDF on the float probabilities
        actions = np.minimum((cdf <= u[:, None]).sum(axis=1), probs.shape[1] - 1).astype(np.int64)
        mask = np.asarray(mask, dtype=bool)
        if not self.candidates:
            mask = mask[:, :0]
        elif mask.shape != (len(obs), len(self.candidates)):
            expected = (len(obs), len(self.candidates))
            raise ValueError(f"mask shape {mask.shape}, expected {expected}")
        self.buffer.add_action(obs, mask, actions, probs[np.arange(len(probs)), actions])
        return actions

    def record(self, rewards: np.ndarray, truncated: bool, next_obs: np.ndarray) -> None:
        """Record the world's answer to the last act(): own rewards [B], time limit, next obs."""
        self.buffer.add_outcome(rewards, truncated, next_obs)

    # ---- updating -----------------------------------------------------------------------------

    def begin_update(self) -> None:
        """GAE, critic targets and kappa for the recorded batch: once, before the K rounds."""
        ro = self.buffer.rollout()
        obs = obs_tensor(rows(ro.obs))
        rewards = torch.from_numpy(ro.rewards)
        with torch.no_grad():
            values = self.critic(obs).reshape(rewards.shape)
            next_values = self.critic(obs_tensor(rows(ro.next_obs))).reshape(rewards.shape)
        truncated = torch.from_numpy(ro.truncated)
        advantages, targets = gae(rewards, values, next_values, torch.zeros_like(truncated),
                                  truncated, self.config.gamma, self.config.lam)
        advantages = advantages.reshape(-1)
        self._update = _Update(
            obs=obs,
            actions=torch.from_numpy(rows(ro.actions)),
            behaviour=torch.from_numpy(rows(ro.behaviour)),
            masks=torch.from_numpy(rows(ro.masks)).to(torch.float32),
            advantages=advantages,
            targets=targets.reshape(-1),
            kappa=advantages.abs().mean(),  # paper 4.4: kappa_i = mean |A_i|
            mean_reward=float(ro.rewards.mean()),
        )

    def _current(self) -> _Update:
        if self._update is None:
            raise RuntimeError("begin_update() must come first")
        return self._update

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
        with torch.no_grad():
            dist: dict = {"probs": self.policy.probs(u.obs).numpy()}
            suggestions = {j: self.suggesters[str(j)].probs(u.obs).numpy() for j in picked_by}
        if k == 0:
            dist.update(actions=u.actions.numpy().copy(), behaviour=u.behaviour.numpy().copy())
        return Outgoing(broadcast={Kind.DIST: dist},
                        addressed={j: {Kind.SUGG: {"to": j, "probs": p}} for j, p in suggestions.items()})

    def _neighbour_terms(self, u: _Update, k: int, received: Received) -> list[NeighbourTerms]:
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
                logp_ij=self.suggesters[str(j)].log_probs(u.obs),
                actions=a_j,
                behaviour=beh_j,
                probs=received_array(dist["probs"], (R, A), np.float32, f"P_jj from {j}"),
                suggestion=received_array(sugg["probs"], (R, A), np.float32, f"S_ji from {j}"),
                mask=u.masks[:, m],
            ))
        return terms

    def update_step(self, k: int, received: Received) -> None:
        """One full-batch Adam step on the SS loss with round k's received messages."""
        u = self._current()
        terms = ss_loss(
            logp_ii=self.policy.log_probs(u.obs),
            actions=u.actions,
            behaviour=u.behaviour,
            advantages=u.advantages,
            kappa=u.kappa,
            rho=self.config.rho,
            neighbours=self._neighbour_terms(u, k, received),
            clip_eps=self.config.clip_eps,
            values=self.critic(u.obs),
            returns=u.targets,
            value_coef=self.config.value_coef,
        )
        self.optimizer.zero_grad()
        terms.total.backward()
        if self.config.max_grad_norm > 0:  # per param group: actor (pi_ii + pi_ij) and critic
            for group in self.optimizer.param_groups:
                nn.utils.clip_grad_norm_(group["params"], self.config.max_grad_norm)
        self.optimizer.step()
        u.rounds.append({"policy_loss": -terms.surrogate, "value_loss": terms.value_loss,
                         "penalty": terms.penalty, "entropy": terms.entropy})
        u.sugg_sum += terms.suggestion_sq_sum
        u.sugg_count += terms.suggestion_count

    def end_update(self) -> dict[str, float]:
        """Statistics of this update (loss parts averaged over its rounds); clears the rollout."""
        u = self._current()
        stats = {key: float(np.mean([r[key] for r in u.rounds])) if u.rounds else float("nan")
                 for key in ("policy_loss", "value_loss", "penalty", "entropy")}
        stats.update(
            kappa=float(u.kappa),
            suggestion_mse=u.sugg_sum / u.sugg_count if u.sugg_count else float("nan"),
            mean_reward=u.mean_reward,
            comm_gaps=float(u.gaps),
            active_neighbors=float(u.masks.sum(dim=1).mean()),
        )
        self.buffer.clear()
        self._update = None
        self.updates += 1
        return stats

    # ---- persistence --------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Nets, optimiser, RNG and update counter (torch.save-able); take it between updates."""
        return {
            "policy": self.policy.state_dict(),
            "suggesters": self.suggesters.state_dict(),
            "critic": self.critic.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.bit_generator.state,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict) -> None:
        """Inverse of state_dict: continue bit-identically."""
        self.policy.load_state_dict(state["policy"])
        self.suggesters.load_state_dict(state["suggesters"])
        self.critic.load_state_dict(state["critic"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        self.updates = int(state["updates"])

    def flat_parameters(self) -> np.ndarray:
        """Every parameter, concatenated (for bit-identity checks)."""
        nets = (self.policy, self.critic, self.suggesters)
        return torch.cat([p.detach().reshape(-1) for n in nets for p in n.parameters()]).numpy()

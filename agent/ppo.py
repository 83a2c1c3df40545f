"""The PPO core every learner of the runtime shares (DESIGN.md sections 3-4): agent i's own policy pi_ii
and critic V_i, Adam, its RNG, its rollout, GAE once per episode batch, and one full-batch Adam step per
exchange round. What an algorithm exchanges and which loss it minimises is its subclass's: SS in
`agent/algorithms/ss.py`, the baselines in `agent/algorithms/`.

Drive every learner as: act/record for T steps -> begin_update -> for k < K: outgoing(k), exchange,
update_step(k, received) -> end_update (CL takes the central learner's team advantage before
begin_update: `agent/algorithms/cl.py`). The in-process simulator and the agent process both do so,
and a learner's numbers depend only on (config, agent id, candidates) and what it is handed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from agent import lean_torch
from agent.buffer import Rollout, RolloutBuffer, rows
from agent.exchange import Outgoing, Received, RoundKinds
from agent.nets import PolicyNet, ValueNet, obs_tensor, pick_device, sample
from agent.returns import gae
from agent.ss_loss import LossTerms, masked_mean, ss_loss
from protocol.run.config import RunConfig
from protocol.wire.messages import Kind
from protocol.wire.spec import WorldSpec
from protocol.run.topology import resolve_neighbors


CPU = torch.device("cpu")


def derived_seed(seed: int, agent_id: int) -> int:
    """The agent's own seed, independent of every other agent's."""
    return int(np.random.SeedSequence([seed, agent_id]).generate_state(1)[0])


def received_array(x: np.ndarray, shape: tuple[int, ...], dtype: type, what: str,
                   device: torch.device = CPU) -> torch.Tensor:
    """A writable tensor copy of a received (possibly read-only) array on `device`, checked against `shape`."""
    arr = np.array(x, dtype=dtype)
    if arr.shape != shape:
        raise ValueError(f"{what}: expected shape {shape}, got {arr.shape}")
    return torch.from_numpy(arr).to(device)


@dataclass
class UpdateBatch:
    """One update's rows (time-major, R = T * B) and what its rounds accumulate."""

    obs: torch.Tensor  # [R, D] flattened, scaled
    actions: torch.Tensor  # [R] a_i
    behaviour: torch.Tensor  # [R] pi_ii_old(a_i|o_i)
    masks: torch.Tensor  # [R, M] 1.0 where candidate m is a neighbour
    advantages: torch.Tensor  # [R] A_i (eq. 17), on the learning reward
    targets: torch.Tensor  # [R] G_i (eq. 18)
    valid: torch.Tensor  # [R] 1.0 where the step was played, 0.0 on padding after an episode's end
    kappa: torch.Tensor  # mean |A_i| over the valid rows
    mean_reward: float  # of the environment's reward r_i
    neighbour_actions: dict[int, Any] = field(default_factory=dict)  # j -> j's actions and behaviour (round 0)
    rounds: list[dict[str, float]] = field(default_factory=list)
    sugg_sum: float = 0.0
    sugg_count: int = 0
    gaps: int = 0


class PPOLearner:
    """Agent i's nets, optimiser, RNG and rollout; on its own it is IPPO (exchanges nothing).

    Subclasses add nets (`build_nets`, `nets`), an exchange (`subscriptions`, `expected`, `outgoing`)
    and a loss (`update_step`); `learning_rewards` lets a subclass learn from a shaped reward, and
    `estimate` / `value_terms` let one take its advantages from elsewhere (CL, with OWN_CRITIC False).
    """

    OWN_CRITIC = True  # False: no V_i (nor its Adam group); the subclass supplies `estimate` and `value_terms`

    def __init__(self, agent_id: int, spec: WorldSpec, candidates: tuple[int, ...], config: RunConfig):
        self.agent_id = agent_id
        self.spec = spec
        self.config = config
        self.candidates: tuple[int, ...] = tuple(candidates)
        # everyone's neighbours: partner draws and consensus weights of the neighbours are computed here
        self.graph = {**resolve_neighbors(config, spec), agent_id: self.candidates}
        self.device = pick_device(config.device)
        seed = derived_seed(config.seed, agent_id)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # pi_ii and V_i first, so every algorithm starts from the same own nets
            self.policy = PolicyNet(spec.obs_shape, spec.n_actions, config.hidden)
            if self.OWN_CRITIC:
                self.critic = ValueNet(spec.obs_shape, config.hidden)
            self.build_nets()
        for net in self.nets().values():
            net.to(self.device)  # built on the CPU (the same initial values everywhere), then moved
        groups = [{"params": self.actor_parameters(), "lr": config.actor_lr}]
        if self.OWN_CRITIC:
            groups.append({"params": list(self.critic.parameters()), "lr": config.critic_lr})
        self.optimizer = torch.optim.Adam(groups)
        self.rng = np.random.default_rng(seed)
        self.updates = 0
        self.buffer = RolloutBuffer()
        self._update: UpdateBatch | None = None

    # ---- nets -----------------------------------------------------------------------------------

    def build_nets(self) -> None:
        """Build the algorithm's further nets; runs on agent i's torch seed, after pi_ii and V_i."""

    def nets(self) -> dict[str, nn.Module]:
        """Every trained net by checkpoint name; `flat_parameters` concatenates them in this order."""
        return {"policy": self.policy, "critic": self.critic}

    def actor_parameters(self) -> list[nn.Parameter]:
        """The actor Adam group: every net but the critic."""
        return [p for name, net in self.nets().items() if name != "critic" for p in net.parameters()]

    # ---- acting -------------------------------------------------------------------------------

    def act(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Sample a_i ~ pi_ii(.|o_i) in each of the B worlds; record o, mask, a_i, behaviour."""
        with torch.no_grad():
            probs = self.policy.probs(self.tensor(obs_tensor(obs))).cpu().numpy()
        actions = sample(probs, self.rng)
        mask = np.asarray(mask, dtype=bool)
        if not self.candidates:
            mask = mask[:, :0]
        elif mask.shape != (len(obs), len(self.candidates)):
            expected = (len(obs), len(self.candidates))
            raise ValueError(f"mask shape {mask.shape}, expected {expected}")
        self.buffer.add_action(obs, mask, actions, probs[np.arange(len(probs)), actions])
        return actions

    def record(self, rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
               next_obs: np.ndarray, executed: bool = True) -> None:
        """Record the world's answer to the last act(): own rewards [B], episode ends [B], next obs, and
        whether our action was played (a step played with the default action is left out of the losses)."""
        self.buffer.add_outcome(rewards, terminated, truncated, next_obs, executed)

    # ---- updating -----------------------------------------------------------------------------

    def learning_rewards(self, ro: Rollout) -> np.ndarray:
        """The reward [T, B] the critic and advantages learn from: the environment's r_i."""
        return ro.rewards

    def estimate(self, ro: Rollout, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(A_i [R], G_i [R]): GAE (eq. 17) and critic targets (eq. 18) on the learning reward, with V_i."""
        rewards = self.tensor(self.learning_rewards(ro))
        with torch.no_grad():
            values = self.critic(obs).reshape(rewards.shape)
            next_values = self.critic(self.tensor(obs_tensor(rows(ro.next_obs)))).reshape(rewards.shape)
        advantages, targets = gae(rewards, values, next_values, self.tensor(ro.terminated),
                                  self.tensor(ro.truncated), self.config.gamma, self.config.lam)
        return advantages.reshape(-1), targets.reshape(-1)

    def begin_update(self) -> None:
        """GAE, critic targets and kappa for the recorded batch: once, before the K rounds."""
        ro = self.buffer.rollout()
        obs = self.tensor(obs_tensor(rows(ro.obs)))
        advantages, targets = self.estimate(ro, obs)
        valid = self.tensor(rows(ro.valid)).to(torch.float32)
        self._update = UpdateBatch(
            obs=obs,
            actions=self.tensor(rows(ro.actions)),
            behaviour=self.tensor(rows(ro.behaviour)),
            masks=self.tensor(rows(ro.masks)).to(torch.float32),
            advantages=advantages,
            targets=targets,
            valid=valid,
            kappa=masked_mean(advantages.abs(), valid),  # paper 4.4: kappa_i = mean |A_i|
            mean_reward=float(ro.rewards.mean()),
        )

    def tensor(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """x as a tensor on this learner's device (on the CPU, a numpy array's own memory: no copy)."""
        return (torch.from_numpy(x) if isinstance(x, np.ndarray) else x).to(self.device)

    def _current(self) -> UpdateBatch:
        if self._update is None:
            raise RuntimeError("begin_update() must come first")
        return self._update

    # ---- the exchange: nothing here (IPPO); subclasses declare theirs ---------------------------

    def subscriptions(self) -> RoundKinds:
        """Every kind this learner may receive from a neighbour over the run."""
        return RoundKinds()

    def expected(self, k: int) -> dict[int, frozenset[Kind]]:
        """Neighbour j -> the kinds round k brings from j."""
        return {}

    def outgoing(self, k: int) -> Outgoing:
        """What this learner sends in round k."""
        return Outgoing()

    def count_gaps(self, k: int, received: Received) -> None:
        """A neighbour missing any kind `expected(k)` names is one communication gap of round k."""
        u = self._current()
        u.gaps += sum(not kinds <= received.get(j, {}).keys() for j, kinds in self.expected(k).items())

    def value_terms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(V_i(o_i) [R] with grad, G_i [R]): what the critic loss (eq. 18) compares."""
        u = self._current()
        return self.critic(u.obs), u.targets

    def ppo_terms(self, advantages: torch.Tensor) -> LossTerms:
        """PPO-clip on pi_ii with `advantages` plus the critic loss (eq. 16 with no neighbours, eq. 18)."""
        u = self._current()
        values, targets = self.value_terms()
        return ss_loss(logp_ii=self.policy.log_probs(u.obs), actions=u.actions, behaviour=u.behaviour,
                       advantages=advantages, kappa=u.kappa, rho=0.0, neighbours=(),
                       clip_eps=self.config.clip_eps, values=values, returns=targets,
                       value_coef=self.config.value_coef, valid=u.valid)

    def update_step(self, k: int, received: Received) -> None:
        """One full-batch Adam step on PPO with the own advantages A_i."""
        self.count_gaps(k, received)
        self.step(self.ppo_terms(self._current().advantages))

    def step(self, terms: LossTerms) -> None:
        """One Adam step on `terms.total`, gradients clipped per group (actor, critic); keeps its statistics."""
        u = self._current()
        self.optimizer.zero_grad()
        terms.total.backward()
        if self.config.max_grad_norm > 0:
            for group in self.optimizer.param_groups:
                nn.utils.clip_grad_norm_(group["params"], self.config.max_grad_norm)
        lean_torch.step(self.optimizer)
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

    def skip_to(self, update: int) -> None:
        """Drop a partial rollout and continue at `update` (this agent missed the updates in between)."""
        self.buffer.clear()
        self._update = None
        self.updates = update

    # ---- persistence --------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Nets, optimiser, RNG and update counter (torch.save-able); take it between updates."""
        return {
            **{name: net.state_dict() for name, net in self.nets().items()},
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.bit_generator.state,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict) -> None:
        """Inverse of state_dict: continue bit-identically."""
        for name, net in self.nets().items():
            net.load_state_dict(state[name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        self.updates = int(state["updates"])

    def flat_parameters(self) -> np.ndarray:
        """Every parameter, concatenated (for bit-identity checks)."""
        return torch.cat([p.detach().reshape(-1) for n in self.nets().values() for p in n.parameters()]).cpu().numpy()

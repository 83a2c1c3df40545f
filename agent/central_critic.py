"""CL's central critic (DESIGN.md section 4), socket-free: V(s) on the joint state s = (o_1, ..., o_N) at a
row, trained on the team reward r_sum = sum_i r_i; the team advantage it computes is every agent's.

Per update: `advantages(reports)` takes one REWARD body per agent (agent order 0..N-1), computes GAE
(eq. 17) and the critic targets (eq. 18: bootstrapped only where the team's episode was truncated) on
r_sum and returns the team advantage [R]; `fit()` then takes K full-batch Adam steps on mean((V(s) - G)^2)
over the rows the team played. The team's episode ends where its last agent's ends (`team_flags`). The central learner
process (`agent/central.py`) and `ss-sim` both drive it so, which keeps them bit-identical.

A report's rows are one rollout (t = 0..T-1, time-major r = t * B + b), so the state after row r's step
is the next row block's state, and `last_obs` (o[T]) ends the last block.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from agent import lean_torch
from agent.exchange import Body
from agent.nets import ValueNet, obs_tensor, pick_device
from agent.returns import gae, team_flags, valid_steps
from agent.ss_loss import masked_mean
from protocol.run.config import RunConfig
from protocol.wire.spec import WorldSpec

CENTRAL_CRITIC_STREAM = 0xCE27A1  # the central critic's initialisation, apart from every agent's own seed


def check_report(body: Body, spec: WorldSpec) -> str | None:
    """None if a REWARD body fits one rollout of `spec` (obs, last obs, episode ends present), else why not."""
    rows, dtype = spec.horizon * spec.batch, np.dtype(spec.obs_dtype)
    if "obs" not in body:
        return "no observations (obs, last_obs, terminated, truncated)"
    expected = {"rewards": (rows,), "obs": (rows, *spec.obs_shape), "last_obs": (spec.batch, *spec.obs_shape),
                "terminated": (rows,), "truncated": (rows,)}
    for name, shape in expected.items():
        if body[name].shape != shape:
            return f"{name} shape {body[name].shape}, expected {shape}"
    if body["obs"].dtype != dtype or body["last_obs"].dtype != dtype:
        return f"observations {body['obs'].dtype}/{body['last_obs'].dtype}, expected {dtype}"
    return None


def stand_ins(reports: Sequence[Body | None], spec: WorldSpec) -> list[Body]:
    """Every report, a missing one (None) replaced by zero rewards and observations with a present one's
    episode ends (the world's clock is everyone's)."""
    present = next(r for r in reports if r is not None)
    rows, dtype = spec.horizon * spec.batch, np.dtype(spec.obs_dtype)
    zero = {"rewards": np.zeros(rows, np.float32), "obs": np.zeros((rows, *spec.obs_shape), dtype),
            "last_obs": np.zeros((spec.batch, *spec.obs_shape), dtype),
            "terminated": present["terminated"], "truncated": present["truncated"]}
    return [zero if r is None else r for r in reports]


def joint_states(observations: Sequence[np.ndarray]) -> torch.Tensor:
    """s = (o_1, ..., o_N): every agent's flattened (and scaled) observation, concatenated per row."""
    return torch.cat([obs_tensor(o) for o in observations], dim=1)


class CentralCritic:
    """V(s) on the joint state, its Adam, and the batch of the current update (targets for `fit`)."""

    def __init__(self, spec: WorldSpec, config: RunConfig):
        self.spec = spec
        self.config = config
        seed = np.random.SeedSequence([config.seed, CENTRAL_CRITIC_STREAM]).generate_state(1)[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))  # the run seed alone
            self.critic = ValueNet((spec.n_agents * int(np.prod(spec.obs_shape)),), config.hidden)
        self.device = pick_device(config.device)
        self.critic.to(self.device)
        self.optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.states: torch.Tensor | None = None  # this update's joint states s [R, S], set by `advantages`
        self.targets: torch.Tensor | None = None  # and its critic targets G [R]
        self.valid: torch.Tensor | None = None  # and its loss mask [R]: rows the team played
        self.complete = True  # every agent reported this update (else `fit` skips it)

    def advantages(self, reports: Sequence[Body | None]) -> np.ndarray:
        """The team advantage A[t] (eq. 17 on r_sum) [R] float32 from every agent's REWARD (in agent order);
        keeps the states and targets G (eq. 18) for `fit`. A missing report (None: a straggler) counts as
        zero reward and observation; `fit` then skips the update rather than learn a target without it."""
        if len(reports) != self.spec.n_agents:
            raise ValueError(f"{len(reports)} reports for {self.spec.n_agents} agents")
        self.complete = all(r is not None for r in reports)
        reports = stand_ins(reports, self.spec)
        T, B = self.spec.horizon, self.spec.batch
        states = joint_states([r["obs"] for r in reports]).to(self.device)
        next_states = torch.cat([states[B:], joint_states([r["last_obs"] for r in reports]).to(self.device)])
        team_reward = torch.from_numpy(np.sum([r["rewards"] for r in reports], axis=0, dtype=np.float32)).to(self.device)
        terminated, truncated = team_flags([r["terminated"].reshape(T, B) for r in reports],
                                           [r["truncated"].reshape(T, B) for r in reports])
        with torch.no_grad():
            values, next_values = self.critic(states), self.critic(next_states)
        adv, targets = gae(team_reward.reshape(T, B), values.reshape(T, B), next_values.reshape(T, B),
                           torch.from_numpy(terminated).to(self.device), torch.from_numpy(truncated).to(self.device),
                           self.config.gamma, self.config.lam)
        self.states, self.targets = states, targets.reshape(-1)
        self.valid = torch.from_numpy(valid_steps(terminated, truncated).reshape(-1)).to(self.device, torch.float32)
        return adv.reshape(-1).cpu().numpy()

    def state_dict(self) -> dict[str, Any]:
        """The critic's parameters and Adam state (all a resumed run needs: `fit` draws no randomness)."""
        return {"critic": self.critic.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved."""
        self.critic.load_state_dict(state["critic"])
        self.optimizer.load_state_dict(state["optimizer"])

    def fit(self) -> dict[str, float]:
        """K full-batch Adam steps on mean((V(s) - G)^2) (eq. 18), gradients clipped as the agents' are;
        returns the mean value loss over the steps."""
        if self.states is None or self.targets is None or self.valid is None:
            raise RuntimeError("advantages() must come first")
        states, targets, valid = self.states, self.targets, self.valid
        if not self.complete:
            self.states = self.targets = self.valid = None
            return {"value_loss": float("nan")}
        losses = []
        for _ in range(self.config.iterations):
            loss = masked_mean((self.critic(states) - targets) ** 2, valid)
            self.optimizer.zero_grad()
            loss.backward()
            if self.config.max_grad_norm > 0:
                nn.utils.clip_grad_norm_(self.critic.parameters(), self.config.max_grad_norm)
            lean_torch.step(self.optimizer)
            losses.append(float(loss.detach()))
        self.states = self.targets = self.valid = None
        return {"value_loss": float(np.mean(losses))}

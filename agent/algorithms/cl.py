"""CL, a central critic on the sum of rewards (DESIGN.md section 4; paper section 5.2): agent i keeps only its
actor pi_ii. Once per episode batch it reports its rewards and observations (kind REWARD) to the central
learner (`agent/central.py`, in-process `agent/central_critic.py`), which answers with the team advantage
A[t] (kind ADV); the agent then takes K PPO-clip passes on A. It exchanges nothing with any peer.

Drive it as: act/record -> `report()` to the central learner -> `receive_advantages(ADV body)` ->
begin_update -> K update_steps -> end_update.
"""

from __future__ import annotations

import numpy as np
import torch

from agent.buffer import Rollout, rows
from agent.exchange import Body
from agent.ppo import PPOLearner, received_array
from protocol.run.config import RunConfig
from protocol.wire.spec import WorldSpec


class CLLearner(PPOLearner):
    """An individual actor on the central critic's team advantage; no critic of its own, no neighbours."""

    OWN_CRITIC = False

    def __init__(self, agent_id: int, spec: WorldSpec, candidates: tuple[int, ...], config: RunConfig):
        super().__init__(agent_id, spec, (), config)
        self._team_advantages: torch.Tensor | None = None

    def nets(self) -> dict[str, torch.nn.Module]:
        return {"policy": self.policy}

    def report(self) -> Body:
        """The REWARD body for the recorded rollout: r_i [R], o_i [R, ...], o_i[T] [B, ...], and the episode
        ends terminated [R] and truncated [R]."""
        ro = self.buffer.rollout()
        return {"rewards": rows(ro.rewards), "obs": rows(ro.obs), "last_obs": ro.next_obs[-1],
                "terminated": rows(ro.terminated), "truncated": rows(ro.truncated)}

    def receive_advantages(self, body: Body) -> None:
        """Take the central learner's ADV body (the team advantage [R]) for the next update."""
        R = self.spec.horizon * self.spec.batch
        self._team_advantages = received_array(body["advantages"], (R,), np.float32, "ADV from the central learner", self.device)

    def estimate(self, ro: Rollout, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(team advantage [R], no targets: zeros [R]); the critic is the central learner's."""
        if self._team_advantages is None:
            raise RuntimeError("receive_advantages() must come before begin_update()")
        advantages, self._team_advantages = self._team_advantages, None
        return advantages, torch.zeros_like(advantages)

    def value_terms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """No own critic: the critic loss is 0."""
        targets = self._current().targets
        return targets, targets

"""IMR, intrinsic moral rewards (Tennant et al. 2023, virtue-kindness; paper section 5.2): independent PPO
on the learning reward r_i + xi * 1[a_i is the environment's kind action] (xi = `imr_xi`). It sends only
what IPPO sends; metrics.csv still reports the environment's reward (the env server computes it).

The kind action, per environment, read from the agent's own rollout:
- cleanup: CLEAN (action 7, `envserver/worlds/cleanup.py`): cleaning the river;
- harvest: not eating, i.e. r_i[t] == 0: eating an apple (+1) is Harvest's only reward, firing is off;
- predation: approaching the prey as the world judges it (`envserver/worlds/predation.py`): action 1
  (right) when x_i <= x_prey, else action 0; the agent's own observation entry is (x_i - x_prey) / 30;
- navigation and any other world: none, cooperation there is not tied to an action, so IMR is IPPO.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from agent.buffer import Rollout
from agent.ppo import PPOLearner
from protocol.run.config import RunConfig
from protocol.wire.spec import WorldSpec

CLEANUP_CLEAN = 7
PREDATION_RIGHT, PREDATION_LEFT = 1, 0

# env -> (rollout, agent id) -> [T, B] bool: a_i[t] was the kind action
KindRule = Callable[[Rollout, int], np.ndarray]
KIND_ACTIONS: dict[str, KindRule] = {
    "cleanup": lambda ro, i: ro.actions == CLEANUP_CLEAN,
    "harvest": lambda ro, i: ro.rewards == 0,
    "predation": lambda ro, i: ro.actions == np.where(ro.obs[..., i] <= 0, PREDATION_RIGHT, PREDATION_LEFT),
}


def kind_actions(env: str, ro: Rollout, agent_id: int) -> np.ndarray:
    """[T, B] bool: where agent `agent_id`'s action was `env`'s kind action (all False if it has none)."""
    rule = KIND_ACTIONS.get(env)
    return rule(ro, agent_id) if rule else np.zeros(ro.rewards.shape, dtype=bool)


def imr_rewards(env: str, ro: Rollout, agent_id: int, xi: float) -> np.ndarray:
    """The learning reward r_i + xi * 1[kind action], float32 [T, B]."""
    return (ro.rewards + np.float32(xi) * kind_actions(env, ro, agent_id)).astype(np.float32)


class IMRLearner(PPOLearner):
    """Independent PPO on the IMR-shaped reward; exchanges nothing."""

    def __init__(self, agent_id: int, spec: WorldSpec, candidates: tuple[int, ...], config: RunConfig):
        super().__init__(agent_id, spec, (), config)

    def learning_rewards(self, ro: Rollout) -> np.ndarray:
        return imr_rewards(self.spec.name, ro, self.agent_id, self.config.imr_xi)

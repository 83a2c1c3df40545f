"""One agent's rollout over T steps of B parallel worlds, filled step by step, read once per update.

`Rollout` holds the stacked arrays [T, B, ...]; `rows` flattens them time-major (row r = t * B + b),
the row order every exchange payload uses (see agent/exchange.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.returns import valid_steps


@dataclass(frozen=True)
class Rollout:
    """A finished rollout; every array has leading axes [T, B]."""

    obs: np.ndarray  # [T, B, *obs_shape] o_i[t], as received
    next_obs: np.ndarray  # [T, B, *obs_shape] o_i[t+1] (the observation after step t)
    actions: np.ndarray  # [T, B] int64 a_i[t]
    behaviour: np.ndarray  # [T, B] float32 pi_ii_old(a_i[t]|o_i[t]) at acting time
    masks: np.ndarray  # [T, B, M] bool: candidate m was a neighbour at step t
    rewards: np.ndarray  # [T, B] float32 r_i[t]
    terminated: np.ndarray  # [T, B] bool: the episode truly ended with step t (no bootstrap)
    truncated: np.ndarray  # [T, B] bool: it was cut short with step t (bootstrap with V(o[t+1]))
    valid: np.ndarray  # [T, B] bool loss mask: step t was played with our action (False: padding after the
    # end, or a step the env server played with the default action because ours came too late)


def rows(x: np.ndarray) -> np.ndarray:
    """[T, B, ...] -> [T * B, ...], time-major (row r = t * B + b)."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


class RolloutBuffer:
    """Collects (o, mask, a, behaviour) when acting and (r, terminated, truncated, o') after each step."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Forget everything recorded."""
        self._acted: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._outcomes: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add_action(
        self, obs: np.ndarray, mask: np.ndarray, actions: np.ndarray, behaviour: np.ndarray
    ) -> None:
        """Record what the agent saw and did at one step (arrays [B, ...])."""
        if len(self._acted) != len(self._outcomes):
            raise RuntimeError("act() called twice without record() in between")
        self._acted.append((np.array(obs), np.array(mask, dtype=bool),
                            np.asarray(actions, dtype=np.int64),
                            np.asarray(behaviour, dtype=np.float32)))

    def add_outcome(self, rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
                    next_obs: np.ndarray, executed: bool = True) -> None:
        """Record the world's answer to the last action: own rewards [B], episode ends [B], next obs, and
        whether our action was the one played (False: the env server used the default action)."""
        if len(self._acted) != len(self._outcomes) + 1:
            raise RuntimeError("record() called without a preceding act()")
        rewards = np.asarray(rewards, dtype=np.float32)
        flags = [np.broadcast_to(np.asarray(f, dtype=bool), rewards.shape).copy()
                 for f in (terminated, truncated, executed)]
        self._outcomes.append((rewards, *flags, np.array(next_obs)))

    def rollout(self) -> Rollout:
        """Stack the recorded steps into [T, B, ...] arrays."""
        if not self._outcomes or len(self._acted) != len(self._outcomes):
            raise RuntimeError("rollout needs at least one complete act()/record() step")
        obs, masks, actions, behaviour = (np.stack(x) for x in zip(*self._acted))
        rewards, terminated, truncated, executed, next_obs = (np.stack(x) for x in zip(*self._outcomes))
        return Rollout(obs=obs, next_obs=next_obs, actions=actions, behaviour=behaviour, masks=masks,
                       rewards=rewards, terminated=terminated, truncated=truncated,
                       valid=valid_steps(terminated, truncated) & executed)

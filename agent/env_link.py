"""The agent's DEALER to the env server: RESET / STEP out, its own OBS (observation, reward, mask) back."""

from __future__ import annotations

from typing import Callable

import numpy as np
import zmq

from agent.request import Requester
from protocol.audit import Outbox
from protocol.inbox import Inbox
from protocol.keys import KeyRing
from protocol.messages import ENVSERVER_ID, Kind, Message
from protocol.spec import WorldSpec


class EnvServerUnavailable(RuntimeError):
    """The env server did not answer before the deadline."""


class EnvLink:
    """Lockstep requests to the env server; every reply is validated against the world's spaces."""

    def __init__(self, ctx: zmq.Context, me: int, endpoint: str, outbox: Outbox, inbox: Inbox,
                 spec: WorldSpec, n_neighbors: int, while_waiting: Callable[[], None] = lambda: None,
                 keys: KeyRing | None = None):
        self.me = me
        self.spec = spec
        self.n_neighbors = n_neighbors
        self.link = Requester(ctx, endpoint, "the env server", "envserver", ENVSERVER_ID, outbox, inbox,
                              EnvServerUnavailable, while_waiting, keys)

    def reset(self, episode: int, deadline_s: float) -> Message:
        """Ask for episode batch `episode`; returns the OBS with the initial observations."""
        return self.request(Kind.RESET, {"episode": episode}, episode, 0, deadline_s)

    def step(self, episode: int, step: int, actions: np.ndarray, deadline_s: float) -> Message:
        """Send our actions for step `step` (1..T); returns the OBS after the world moved."""
        return self.request(Kind.STEP, {"episode": episode, "actions": actions}, episode, step, deadline_s)

    def request(self, kind: Kind, body: dict, episode: int, step: int, deadline_s: float) -> Message:
        return self.link.request(kind, body, Kind.OBS, lambda msg: self._check(msg, episode, step), deadline_s,
                                 f"episode batch {episode}, step {step}", step=step)

    def _check(self, msg: Message, episode: int, step: int) -> tuple[str, str] | None:
        if msg.body["episode"] != episode or msg.step != step:
            return "stale", f"OBS e{msg.body['episode']} s{msg.step} while waiting for e{episode} s{step}"
        problem = self._problem(msg, step)
        return None if problem is None else ("invalid", f"OBS from the env server: {problem}")

    def _problem(self, msg: Message, step: int) -> str | None:
        spec, b = self.spec, self.spec.batch
        if msg.body["to"] != self.me:
            return f"addressed to agent {msg.body['to']}, not to us (agent {self.me})"
        obs = msg.body["obs"]
        if obs.shape != (b, *spec.obs_shape) or obs.dtype != np.dtype(spec.obs_dtype):
            return f"obs {obs.dtype}{obs.shape}, expected {spec.obs_dtype}{(b, *spec.obs_shape)}"
        if msg.body["mask"].shape != (b, self.n_neighbors):
            return f"mask shape {msg.body['mask'].shape}, expected {(b, self.n_neighbors)}"
        if step > 0 and ("reward" not in msg.body or msg.body["reward"].shape != (b,)):
            return "reward missing or not one per parallel world"
        return None

    def close(self) -> None:
        self.link.close()

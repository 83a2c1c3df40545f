"""The agent's DEALER to the env server: RESET / STEP out, its own OBS (observation, reward, mask) back."""

from __future__ import annotations

from typing import Callable

import numpy as np
import zmq

from agent.request import Requester
from protocol.audit.outbox import Outbox
from protocol.transport.inbox import Inbox
from protocol.transport.keys import KeyRing
from protocol.wire.messages import ENVSERVER_ID, Kind, Message
from protocol.wire.spec import WorldSpec


class EnvServerUnavailable(RuntimeError):
    """The env server did not answer before the deadline."""


class Behind(Exception):
    """The env server moved on without us (we were paused, disconnected or restarted): the partial episode
    batch is lost, and `episode` is the batch we can still join."""

    def __init__(self, episode: int, reason: str):
        super().__init__(reason)
        self.episode = episode


# A request unanswered for the env server's own deadline plus this is sent again (marked resync): the env
# server always answers by its deadline, so silence past it means a lost reply, never a slow world.
RETRY_MARGIN_S = 5.0


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
        self.fresh = True  # nothing asked yet

    def reset(self, episode: int, retry_s: float, give_up_s: float) -> Message:
        """Ask for episode batch `episode`; returns the OBS with the initial observations."""
        return self.request(Kind.RESET, {"episode": episode}, episode, 0, retry_s, give_up_s)

    def step(self, episode: int, step: int, actions: np.ndarray, retry_s: float, give_up_s: float) -> Message:
        """Send our actions for step `step` (1..T); returns the OBS after the world moved."""
        return self.request(Kind.STEP, {"episode": episode, "actions": actions}, episode, step, retry_s, give_up_s)

    def request(self, kind: Kind, body: dict, episode: int, step: int, retry_s: float, give_up_s: float) -> Message:
        """Lazy Pirate: resend (marked resync) every `retry_s`, give up after `give_up_s`; the first request
        of this process is marked resync too (a restarted agent may be behind). Raises Behind."""
        msg = self.link.request(kind, body, {Kind.OBS, Kind.EPISODE_END}, lambda m: self._check(m, episode, step),
                                give_up_s, f"episode batch {episode}, step {step}", retry_s=retry_s,
                                resync=self.fresh, step=step)
        self.fresh = False
        return msg

    def _check(self, msg: Message, episode: int, step: int) -> tuple[str, str] | None:
        if msg.kind is Kind.EPISODE_END:
            join = msg.body["episode"]
            if join > episode or (join == episode and step > 0):
                raise Behind(join, msg.body["reason"])
            return "stale", f"EPISODE_END (join e{join}) while waiting for e{episode} s{step}"
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

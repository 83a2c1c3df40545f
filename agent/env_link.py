"""The agent's DEALER to the env server: RESET / STEP out, its own OBS (observation, reward, mask) back."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import zmq

from protocol import sockets
from protocol.audit import Outbox
from protocol.inbox import Inbox
from protocol.messages import ENVSERVER_ID, Kind, Message
from protocol.spec import WorldSpec


class EnvServerUnavailable(RuntimeError):
    """The env server did not answer before the deadline."""


class EnvLink:
    """Lockstep requests to the env server; every reply is validated against the world's spaces."""

    def __init__(self, ctx: zmq.Context, me: int, endpoint: str, outbox: Outbox, inbox: Inbox,
                 spec: WorldSpec, n_neighbors: int, while_waiting: Callable[[], None] = lambda: None):
        self.me = me
        self.while_waiting = while_waiting  # e.g. raise if the coordinator stopped the run
        self.endpoint = endpoint
        self.outbox = outbox
        self.inbox = inbox
        self.spec = spec
        self.n_neighbors = n_neighbors
        self.sock = sockets.dealer(ctx)
        self.sock.connect(endpoint)

    def reset(self, episode: int, deadline_s: float) -> Message:
        """Ask for episode batch `episode`; returns the OBS with the initial observations."""
        return self.request(Kind.RESET, {"episode": episode}, episode, 0, deadline_s)

    def step(self, episode: int, step: int, actions: np.ndarray, deadline_s: float) -> Message:
        """Send our actions for step `step` (1..T); returns the OBS after the world moved."""
        return self.request(Kind.STEP, {"episode": episode, "actions": actions}, episode, step, deadline_s)

    def request(self, kind: Kind, body: dict, episode: int, step: int, deadline_s: float) -> Message:
        end = time.monotonic() + deadline_s
        if not self.sock.poll(int(deadline_s * 1000), zmq.POLLOUT):
            raise EnvServerUnavailable(f"cannot reach the env server at {self.endpoint} within {deadline_s:.0f}s")
        self.outbox.send(self.sock, kind, body, dest="envserver", endpoint=self.endpoint, step=step)
        while (left := end - time.monotonic()) > 0:
            self.while_waiting()
            if not self.sock.poll(int(min(left, 0.5) * 1000)):
                continue
            msg = self.inbox.accept(self.sock.recv(), kinds={Kind.OBS}, src=ENVSERVER_ID, origin=self.endpoint)
            if msg is None:
                continue
            if msg.body["episode"] != episode or msg.step != step:
                self.inbox.drop("stale", f"OBS e{msg.body['episode']} s{msg.step} while waiting for e{episode} s{step}")
                continue
            problem = self._check(msg, step)
            if problem is None:
                return msg
            self.inbox.drop("invalid", f"OBS from the env server: {problem}")
        raise EnvServerUnavailable(
            f"no reply from the env server at {self.endpoint} to {kind.value} (episode batch {episode}, "
            f"step {step}) within {deadline_s:.0f}s: is it running?")

    def _check(self, msg: Message, step: int) -> str | None:
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
        self.sock.close()

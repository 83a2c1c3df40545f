"""CL: the agent's DEALER to the central learner - its REWARD (rewards and observations) out, the team ADV back."""

from __future__ import annotations

from typing import Callable

import zmq

from agent.env_link import Behind
from agent.exchange import Body
from agent.request import Requester
from protocol.audit.outbox import Outbox
from protocol.transport.inbox import Inbox
from protocol.transport.keys import KeyRing
from protocol.wire.messages import CENTRAL_LEARNER_ID, Kind, Message


class CentralLearnerUnavailable(RuntimeError):
    """The central learner did not answer before the deadline."""


class LearnerLink:
    """Once per update: our REWARD body to the central learner, its advantages [rows] back (validated)."""

    def __init__(self, ctx: zmq.Context, endpoint: str, outbox: Outbox, inbox: Inbox, rows: int,
                 while_waiting: Callable[[], None] = lambda: None, keys: KeyRing | None = None):
        self.rows = rows
        self.link = Requester(ctx, endpoint, "the central learner", "learner", CENTRAL_LEARNER_ID, outbox, inbox,
                              CentralLearnerUnavailable, while_waiting, keys)

    def advantages(self, update: int, report: Body, deadline_s: float) -> Body:
        """Send `report` (kind REWARD, round `update`); returns the ADV body for the same update."""
        msg = self.link.request(Kind.REWARD, report, {Kind.ADV, Kind.EPISODE_END}, lambda m: self._check(m, update),
                                deadline_s, f"update {update}", round=update)
        return msg.body

    def _check(self, msg: Message, update: int) -> tuple[str, str] | None:
        """Our update's ADV passes; EPISODE_END (the learner moved on without our report) raises Behind."""
        if msg.kind is Kind.EPISODE_END:
            if msg.body["episode"] > update:
                raise Behind(msg.body["episode"], msg.body["reason"])
            return "stale", f"EPISODE_END (join {msg.body['episode']}) while waiting for update {update}"
        if msg.round != update:
            return "stale", f"ADV of update {msg.round} while waiting for update {update}"
        if msg.body["advantages"].shape != (self.rows,):
            return "invalid", f"ADV of shape {msg.body['advantages'].shape}, expected {(self.rows,)}"
        return None

    def close(self) -> None:
        self.link.close()

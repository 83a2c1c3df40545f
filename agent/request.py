"""A DEALER that sends one request through the process's Outbox and waits, up to a deadline, for its reply.

The agent's links to its servers (the env server, CL's central learner) are this with their own reply
checks: a reply that fails the check is logged and dropped, and the wait goes on until the deadline.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import zmq

from protocol.transport import sockets
from protocol.audit.outbox import Outbox
from protocol.transport.inbox import Inbox
from protocol.transport.keys import KeyRing, client_keys
from protocol.wire.messages import Kind, Message

# a reply -> None to accept it, or (drop reason, detail) to log and drop it
ReplyCheck = Callable[[Message], tuple[str, str] | None]


class Requester:
    """Request/reply to one server (`name`, sender id `server_id`); `unavailable` is raised on a deadline."""

    def __init__(self, ctx: zmq.Context, endpoint: str, name: str, dest: str, server_id: int, outbox: Outbox,
                 inbox: Inbox, unavailable: type[RuntimeError],
                 while_waiting: Callable[[], None] = lambda: None, keys: KeyRing | None = None):
        self.endpoint = endpoint
        self.name = name  # for errors: "the env server"
        self.dest = dest  # the audit label: "envserver"
        self.server_id = server_id
        self.outbox = outbox
        self.inbox = inbox
        self.unavailable = unavailable
        self.while_waiting = while_waiting  # e.g. raise if the coordinator stopped the run
        self.sock = sockets.dealer(ctx, curve=client_keys(keys, server_id))
        self.sock.connect(endpoint)

    def request(self, kind: Kind, body: dict[str, Any], replies: set[Kind], check: ReplyCheck,
                deadline_s: float, what: str, *, retry_s: float | None = None, resync: bool = False,
                round: int | None = None, step: int | None = None) -> Message:
        """Send `kind`, return the first reply of a kind in `replies` that passes `check`; `what` names the request.

        With `retry_s` (Lazy Pirate), a request unanswered that long is sent again, marked `resync`: the
        connection may have dropped and come back, losing the reply. `resync` marks the first send too."""
        end = time.monotonic() + deadline_s
        if not self.sock.poll(int(deadline_s * 1000), zmq.POLLOUT):
            raise self.unavailable(f"cannot reach {self.name} at {self.endpoint} within {deadline_s:.0f}s")
        while (left := end - time.monotonic()) > 0:
            self.outbox.send(self.sock, kind, {**body, "resync": True} if resync else body, dest=self.dest,
                             endpoint=self.endpoint, round=round, step=step)
            if (msg := self._await(replies, check, min(left, retry_s or left))) is not None:
                return msg
            resync = True
        raise self.unavailable(f"no reply from {self.name} at {self.endpoint} to {kind.value} ({what}) "
                               f"within {deadline_s:.0f}s: is it running?")

    def _await(self, kinds: set[Kind], check: ReplyCheck, wait_s: float) -> Message | None:
        end = time.monotonic() + wait_s
        while (left := end - time.monotonic()) > 0:
            self.while_waiting()
            if not self.sock.poll(int(min(left, 0.5) * 1000)):
                continue
            msg = self.inbox.accept(self.sock.recv(), kinds=kinds, src=self.server_id, origin=self.endpoint)
            if msg is None:
                continue
            problem = check(msg)
            if problem is None:
                return msg
            self.inbox.drop(*problem)
        return None

    def close(self) -> None:
        self.sock.close()

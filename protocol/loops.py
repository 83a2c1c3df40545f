"""Run loops written as generators (the agent's, agent/driver.py; the world's, envserver/lockstep.py): each
yields a request and is resumed with its reply, whichever transport answers it."""

from __future__ import annotations

from typing import Any, Generator

Loop = Generator[Any, Any, None]


def advance(loop: Loop, reply: Any) -> Any | None:
    """Resume a loop with the reply to its request (None: start it); its next request, or None once it has
    ended (at once, for a run resumed at its last update)."""
    try:
        return loop.send(reply)
    except StopIteration:
        return None

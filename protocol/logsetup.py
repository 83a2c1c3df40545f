"""One log format for every process (stderr; the launcher redirects it to DIR/logs/<process>.log)."""

from __future__ import annotations

import logging
import signal


def configure_logging(verbose: bool = False) -> None:
    """Timestamped lines: `2026-11-24 05:40:01,123 ss-agent INFO agent 3: START ...`."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )


class Terminated(BaseException):
    """SIGTERM arrived: unwind so the process reports STOP and closes its sockets and logs.

    A BaseException, like KeyboardInterrupt: it can surface anywhere, and the `except Exception` that
    turns bad input into a dropped message must not swallow it."""


def raise_on_sigterm() -> None:
    """Turn SIGTERM into the Terminated exception (the default action would exit without cleanup)."""

    def handler(signum: int, frame: object) -> None:
        raise Terminated(f"terminated by signal {signum}")

    signal.signal(signal.SIGTERM, handler)

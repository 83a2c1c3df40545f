"""One log format for every process (stderr; the launcher redirects it to DIR/logs/<process>.log)."""

from __future__ import annotations

import logging


def configure_logging(verbose: bool = False) -> None:
    """Timestamped lines: `2026-11-24 05:40:01,123 ss-agent INFO agent 3: START ...`."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )

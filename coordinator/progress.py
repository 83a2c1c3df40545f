"""The progress bar shared by `ss-sim` and `ss-cluster`: updates done and the latest normalised return."""

from __future__ import annotations

import sys

from tqdm import tqdm

from protocol.run.config import RunConfig


class RunProgress:
    """A tqdm bar over updates (episode batches) showing the latest metrics.csv row."""

    def __init__(self, config: RunConfig, done: int = 0, enabled: bool = True, position: int = 0,
                 label: str | None = None):
        self.bar = tqdm(
            total=config.updates, initial=done, unit="update", disable=not enabled,
            desc=label or f"{config.algo} {config.env} N={config.agents}", file=sys.stderr,
            dynamic_ncols=True, mininterval=0.5, position=position,
        )

    def advance(self, row: dict[str, object], steps: int = 1) -> None:
        """Record `steps` finished updates; `row` is the newest metrics.csv row."""
        shown = {"episode": row["episode"], "norm_return": f"{float(row['normalized_return']):.3f}"}
        if "cc_rate" in row:
            shown["cc"] = f"{float(row['cc_rate']):.2f}"
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update(steps)

    def write(self, line: str) -> None:
        """A console line that does not break the bar."""
        self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()

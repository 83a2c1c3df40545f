"""Append-only CSV logs (metrics.csv, train.csv) that survive crashes and resume cleanly, optionally
mirrored to TensorBoard event files (one scalar per numeric column, step = the row's episode)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

TENSORBOARD_MISSING = "--tensorboard needs the tensorboard package: pip install 'ssmarl[tensorboard]'"


def tensorboard_writer(directory: Path, purge_from: int | None) -> Any:
    """A SummaryWriter on `directory`; with `purge_from`, events of a crashed run at steps >= it are dropped
    (a resumed run rewrites them). One clear line if tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise RuntimeError(TENSORBOARD_MISSING) from None
    return SummaryWriter(str(directory), purge_step=purge_from, flush_secs=10)


def format_value(value: object) -> str:
    """Floats are written with repr so a CSV row round-trips bit for bit."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


class CsvLog:
    """A CSV file with a fixed header; each `append` writes one row and flushes it.

    With `keep_until_episode`, an existing file is kept only up to that episode (rows written after the
    checkpoint that a resumed run restarts from are dropped, so no row is duplicated). With `tensorboard`,
    every row's numeric columns are also written as scalars to event files in that directory.
    """

    def __init__(self, path: Path, columns: Iterable[str], keep_until_episode: int | None = None,
                 tensorboard: Path | None = None):
        self.path = Path(path)
        self.columns = tuple(columns)
        purge_from = None if keep_until_episode is None else keep_until_episode + 1
        self._board = tensorboard_writer(tensorboard, purge_from) if tensorboard is not None else None
        kept = self._rows_to_keep(keep_until_episode)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(self.columns)
        self._writer.writerows(kept)
        self._file.flush()

    def _rows_to_keep(self, keep_until_episode: int | None) -> list[list[str]]:
        if keep_until_episode is None or not self.path.exists():
            return []
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows or tuple(rows[0]) != self.columns:
            raise ValueError(f"{self.path}: header differs from {self.columns}; cannot resume into it")
        episode_col = self.columns.index("episode")
        return [r for r in rows[1:] if len(r) == len(self.columns) and int(r[episode_col]) <= keep_until_episode]

    def append(self, row: Mapping[str, object]) -> None:
        """Write one row (missing columns are an error: nothing is silently dropped)."""
        missing = [c for c in self.columns if c not in row]
        if missing:
            raise KeyError(f"{self.path.name}: row lacks columns {missing}")
        self._writer.writerow([format_value(row[c]) for c in self.columns])
        self._file.flush()
        if self._board is not None:
            step = int(row["episode"])
            for column in self.columns:
                value = row[column]
                if column not in ("episode", "update") and isinstance(value, (int, float)) and not math.isnan(value):
                    self._board.add_scalar(column, value, step)

    def close(self) -> None:
        self._file.close()
        if self._board is not None:
            self._board.close()


def read_rows(path: Path) -> list[dict[str, str]]:
    """All rows of a CSV log as dicts (for tests, plots and progress display)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))

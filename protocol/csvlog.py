"""Append-only CSV logs (metrics.csv, train.csv) that survive crashes and resume cleanly."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Mapping


def format_value(value: object) -> str:
    """Floats are written with repr so a CSV row round-trips bit for bit."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


class CsvLog:
    """A CSV file with a fixed header; each `append` writes one row and flushes it.

    With `keep_until_episode`, an existing file is kept only up to that episode (rows written after the
    checkpoint that a resumed run restarts from are dropped, so no row is duplicated).
    """

    def __init__(self, path: Path, columns: Iterable[str], keep_until_episode: int | None = None):
        self.path = Path(path)
        self.columns = tuple(columns)
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

    def close(self) -> None:
        self._file.close()


def read_rows(path: Path) -> list[dict[str, str]]:
    """All rows of a CSV log as dicts (for tests, plots and progress display)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))

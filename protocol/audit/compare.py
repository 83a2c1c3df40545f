"""What each method shares: bytes sent per agent per episode, by algorithm, from the runs' audit logs.

Per run: the agents' audit logs are tallied (protocol.audit.report) and divided by agents x episodes
played (the last metrics.csv row, else the config's episodes). Per algorithm: the mean over its runs,
and the ratio of its total to SS's (SS = 1.0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.audit.report import discover, summarise
from protocol.run.config import load_toml
from protocol.run.csvlog import read_rows
from protocol.run.rundir import RunDir

REFERENCE = "ss"


@dataclass(frozen=True)
class RunTraffic:
    """One run's agent traffic: bytes by kind, summed over agents, and what to divide it by."""

    run: Path
    algo: str
    agents: int
    episodes: int
    bytes_by_kind: dict[str, int]

    def per_agent_episode(self) -> dict[str, float]:
        """Bytes per agent per episode, by kind."""
        return {k: b / (self.agents * self.episodes) for k, b in self.bytes_by_kind.items()}


def episodes_played(run_dir: Path, config: dict[str, Any]) -> int:
    """Episodes the run finished: the last metrics.csv row's, else the config's."""
    path = RunDir(run_dir).metrics
    rows = read_rows(path) if path.exists() else []
    return int(rows[-1]["episode"]) if rows else int(config["episodes"])


def run_traffic(run_dir: str | Path) -> RunTraffic:
    """Tally one run's agent audit logs (ValueError if it has no config.toml or no agent logs)."""
    run_dir = Path(run_dir)
    config_path = RunDir(run_dir).config
    if not config_path.exists():
        raise ValueError(f"{run_dir}: no config.toml; cannot tell the algorithm")
    config = load_toml(config_path)
    sources = [s for s in discover(run_dir) if s.role == "agent"]
    if not sources:
        raise ValueError(f"{run_dir}: no agent audit logs (agents/<id>/audit.log; ss-sim writes none)")
    by_kind: dict[str, int] = {}
    for source in sources:
        for kind, tally in summarise(source.path).sent.items():
            by_kind[kind] = by_kind.get(kind, 0) + tally.bytes
    return RunTraffic(run_dir, str(config.get("algo", "ss")), int(config["agents"]),
                      episodes_played(run_dir, config), by_kind)


@dataclass(frozen=True)
class AlgoTraffic:
    """Bytes per agent per episode of one algorithm (mean over its runs), and its ratio to SS."""

    algo: str
    runs: int
    by_kind: dict[str, float]
    ratio: float | None  # total / SS's total; None without an SS run

    @property
    def total(self) -> float:
        return sum(self.by_kind.values())


def compare(runs: list[RunTraffic]) -> list[AlgoTraffic]:
    """Per algorithm (in order of first appearance): mean bytes per agent per episode and ratio to SS."""
    grouped: dict[str, list[dict[str, float]]] = {}
    for run in runs:
        grouped.setdefault(run.algo, []).append(run.per_agent_episode())
    means = {algo: {k: sum(r.get(k, 0.0) for r in rs) / len(rs) for k in sorted({k for r in rs for k in r})}
             for algo, rs in grouped.items()}
    reference = sum(means[REFERENCE].values()) if REFERENCE in means else None
    return [AlgoTraffic(algo, len(grouped[algo]), by_kind,
                        sum(by_kind.values()) / reference if reference else None)
            for algo, by_kind in means.items()]


def format_comparison(rows: list[AlgoTraffic]) -> str:
    """An aligned table: algo, runs, total and per-kind bytes per agent per episode, ratio to SS."""
    kinds = sorted({k for r in rows for k in r.by_kind})
    header = ["algo", "runs", "total", *kinds, "vs SS"]
    cells = [header] + [[r.algo, str(r.runs), f"{r.total:.1f}", *(f"{r.by_kind.get(k, 0.0):.1f}" for k in kinds),
                         "n/a" if r.ratio is None else f"{r.ratio:.3f}"] for r in rows]
    widths = [max(len(row[c]) for row in cells) for c in range(len(header))]
    lines = ["bytes sent per agent per episode (agents' audit logs; mean over runs)"]
    for row in cells:
        lines.append("  " + "  ".join(cell.ljust(w) if c == 0 else cell.rjust(w)
                                      for c, (cell, w) in enumerate(zip(row, widths))))
    if not any(r.algo == REFERENCE for r in rows):
        lines.append("no SS run given: no ratio to SS")
    return "\n".join(lines)


def comparison_json(rows: list[AlgoTraffic]) -> dict[str, Any]:
    """`{"algos": {ALGO: {"runs", "bytes_per_agent_episode": {"total", KIND...}, "ratio_to_ss"}}}`."""
    return {"algos": {r.algo: {"runs": r.runs, "bytes_per_agent_episode": {"total": r.total, **r.by_kind},
                               "ratio_to_ss": r.ratio} for r in rows}}

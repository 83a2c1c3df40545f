"""Helpers shared by the benchmarks: the result-line format, run configs, statistics, update timing.

Every measured number is printed as one result line, `name value unit  note`, with a snake_case
name; explanatory lines start with "#". `parse_results` reads the result lines back (the smoke test
uses it), so the format is defined in one place.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from typing import Any, Iterable

from coordinator.sim import Simulation
from protocol.run.config import RunConfig, resolve

_RESULT = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)\s+(?P<value>\S+)\s+(?P<unit>\S+)(?:\s+(?P<note>.*))?$")


def result(name: str, value: float, unit: str, note: str = "") -> None:
    """Print one result line: `name value unit  note`."""
    print(f"{name:<34} {value:>12.6g} {unit:<5} {note}".rstrip(), flush=True)


def explain(text: str) -> None:
    """Print an explanatory line (never parsed as a result)."""
    print(f"# {text}", flush=True)


def parse_results(text: str) -> dict[str, float]:
    """Every result line of a benchmark's output, name -> value; ValueError on a malformed one."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = _RESULT.match(line)
        if match is None:
            raise ValueError(f"not a result line: {line!r}")
        values[match["name"]] = float(match["value"])
    return values


def predation(agents: int, batch: int, updates: int, **overrides: Any) -> RunConfig:
    """A resolved predation config (shipped defaults) for `updates` episode batches."""
    return resolve(None, {"env": "predation", "agents": agents, "batch": batch,
                          "episodes": updates * batch, **overrides})


def median(values: Iterable[float]) -> float:
    """Median, NaN for no values (a bench prints what it could measure rather than crash)."""
    values = list(values)
    return statistics.median(values) if values else math.nan


def time_update(sim: Simulation) -> tuple[float, float]:
    """(rollout + train seconds, train seconds) of the next update of an open simulation, exactly as
    `Simulation.run` plays it."""
    start = time.perf_counter()
    sim.rollout()
    rolled = time.perf_counter()
    sim.train()
    done = time.perf_counter()
    return done - start, done - rolled

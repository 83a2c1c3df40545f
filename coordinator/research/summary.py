"""`python -m coordinator.research.summary RUN_DIR...`: the final metrics of runs, as a table.

Final = mean over the last 10% of metrics.csv rows (the figure the README and the issues quote).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from protocol.run.csvlog import read_rows


def final_metrics(run_dir: Path, fraction: float = 0.1) -> dict[str, float]:
    """Mean of every numeric metric over the last `fraction` of the rows of run_dir/metrics.csv."""
    rows = read_rows(run_dir / "metrics.csv")
    if not rows:
        raise ValueError(f"{run_dir}/metrics.csv has no rows")
    tail = rows[-max(1, int(len(rows) * fraction)):]
    columns = [c for c in rows[0] if c != "episode"]
    return {"episodes": float(rows[-1]["episode"]),
            **{c: sum(float(r[c]) for r in tail) / len(tail) for c in columns}}


def decimals(values: list[float]) -> int:
    """Decimals that show a set of final results apart: 2, 3 if every |value| is below 1, 4 if below 0.01
    (early Cleanup returns are ~0.0006 on the paper's scale)."""
    largest = max(abs(v) for v in values)
    return 2 if largest >= 1 else 3 if largest >= 0.01 else 4


def main(argv: list[str]) -> None:
    runs = [Path(a) for a in argv if (Path(a) / "metrics.csv").exists()]
    if not runs:
        sys.exit("usage: python -m coordinator.research.summary RUN_DIR...  (directories holding metrics.csv)")
    table = dict(zip(run_names(runs), map(final_metrics, runs)))
    columns = list(next(iter(table.values())))
    width = max(24, *(len(name) + 2 for name in table))
    print(f"{'run':<{width}}" + "".join(f"{c:>20}" for c in columns))
    for name, metrics in table.items():
        print(f"{name:<{width}}" + "".join(f"{metrics[c]:>20.4f}" for c in columns))


def run_names(runs: list[Path]) -> list[str]:
    """Each run's path below the runs' common parent (e.g. predation/ss/seed0 for a grid's cells)."""
    paths = [run.resolve() for run in runs]
    root = Path(os.path.commonpath(paths)) if len(paths) > 1 else paths[0].parent
    if root in paths:
        root = root.parent
    return [str(path.relative_to(root)) for path in paths]


if __name__ == "__main__":
    main(sys.argv[1:])

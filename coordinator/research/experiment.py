"""`ss-experiment GRID.toml`: run algorithms x envs x seeds and tabulate their final returns.

A grid file names the cells; each cell is one run directory `<out>/<env>/<label>/seed<seed>`:

    out = "runs/grid"            # root of every cell (relative paths: to the working directory)
    runner = "sim"               # "sim" (in-process) or "cluster" (one OS process per agent)
    algos = ["ss", "ippo", {name = "rho0", algo = "ss", rho = 0.0}]
    envs = ["predation", "navigation"]
    seeds = [0, 1, 2]
    [common]                     # any RunConfig field, for every cell
    episodes = 3200
    [env.predation]              # per-env overrides
    agents = 8

Config precedence per cell: env defaults < [common] < [env.<env>] < the algo entry < env and seed.
Finished cells (metrics.csv holds config.updates rows) are skipped, unfinished ones resumed from their
checkpoints (sim and cluster alike), and `<out>/results.csv` gets one row per finished cell.
"""

from __future__ import annotations

import csv
import multiprocessing
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
from tqdm import tqdm

from coordinator.cli import check_resumable
from coordinator.launcher import run_cluster
from coordinator.sim import Simulation
from coordinator.research.summary import decimals, final_metrics
from protocol.run.config import ALGORITHMS, RunConfig, load_toml, resolve
from protocol.run.csvlog import read_rows
from protocol.run.rundir import RunDir

RUNNERS = ("sim", "cluster")
GRID_KEYS = {"out", "runner", "algos", "envs", "seeds", "common", "env"}
RESULT_COLUMNS = ("env", "algo", "seed", "episodes", "normalized_return", "cc_rate", "equality")


@dataclass(frozen=True)
class AlgoEntry:
    """One entry of `algos`: a label (the cell directory's name) and the RunConfig fields it sets."""

    label: str
    overrides: dict[str, Any]


@dataclass(frozen=True)
class Grid:
    """A parsed grid file."""

    out: Path
    runner: str
    algos: tuple[AlgoEntry, ...]
    envs: tuple[str, ...]
    seeds: tuple[int, ...]
    common: dict[str, Any]
    env_overrides: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Cell:
    """One run of the grid: its env, algo label, seed, resolved config and directory."""

    env: str
    label: str
    seed: int
    config: RunConfig
    out: Path

    @property
    def name(self) -> str:
        return f"{self.env}/{self.label}/seed{self.seed}"


def _algo_entry(entry: Any) -> AlgoEntry:
    if isinstance(entry, str):
        return AlgoEntry(entry, {"algo": entry})
    if isinstance(entry, dict) and isinstance(entry.get("name"), str):
        overrides = {k: v for k, v in entry.items() if k != "name"}
        overrides.setdefault("algo", entry["name"])
        return AlgoEntry(entry["name"], overrides)
    raise ValueError(f"algos: each entry is an algorithm name ({', '.join(ALGORITHMS)}) or a table "
                     f"{{name = LABEL, algo = ALGO, <RunConfig field> = ...}}; got {entry!r}")


def _list(values: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> tuple:
    items = values.get(key)
    if not isinstance(items, list) or not items or not all(isinstance(v, kind) for v in items):
        raise ValueError(f"{key} must be a non-empty list of {what}, got {items!r}")
    if len(set(map(repr, items))) != len(items):
        raise ValueError(f"{key} lists a value twice: {items!r}")
    return tuple(items)


def parse_grid(values: dict[str, Any], base: Path = Path(".")) -> Grid:
    """A Grid from a grid file's TOML values; ValueError names what is wrong."""
    unknown = set(values) - GRID_KEYS
    if unknown:
        raise ValueError(f"unknown grid keys {sorted(unknown)}; a grid has {sorted(GRID_KEYS)}")
    if not isinstance(values.get("out"), str):
        raise ValueError('out (the root directory of every cell, e.g. out = "runs/grid") is required')
    runner = values.get("runner", "sim")
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {list(RUNNERS)}, got {runner!r}")
    algos = tuple(_algo_entry(a) for a in _list(values, "algos", (str, dict), "names or tables"))
    labels = [a.label for a in algos]
    if len(set(labels)) != len(labels):
        raise ValueError(f"algos: two entries share a name: {labels}")
    envs = _list(values, "envs", str, "env names")
    seeds = _list(values, "seeds", int, "integers")
    common = values.get("common", {})
    env_overrides = values.get("env", {})
    if not isinstance(common, dict) or not isinstance(env_overrides, dict):
        raise ValueError("[common] and [env.<name>] must be tables of RunConfig fields")
    stray = set(env_overrides) - set(envs)
    if stray:
        raise ValueError(f"[env.{sorted(stray)[0]}] names an env that is not in envs {list(envs)}")
    for table in (common, *env_overrides.values()):
        if {"env", "seed"} & set(table):
            raise ValueError("env and seed come from the grid's envs and seeds; do not set them in a table")
    return Grid(base / values["out"], runner, algos, envs, seeds, common, env_overrides)


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file (`out` is taken relative to the working directory)."""
    return parse_grid(load_toml(path))


def cells(grid: Grid) -> list[Cell]:
    """Every cell of the grid with its resolved, validated config, seed-major (then env, then algo): a grid
    stopped part-way has every algorithm on every env for its first seeds."""
    out = []
    for seed in grid.seeds:
        for env in grid.envs:
            for algo in grid.algos:
                values = {**grid.common, **grid.env_overrides.get(env, {}), **algo.overrides,
                          "env": env, "seed": seed}
                try:
                    config = resolve(values, {})
                except (ValueError, TypeError) as err:
                    raise ValueError(f"cell {env}/{algo.label}/seed{seed}: {err}") from err
                out.append(Cell(env, algo.label, seed, config, grid.out / env / algo.label / f"seed{seed}"))
    return out


def rows_done(cell: Cell) -> int:
    """How many updates the cell's metrics.csv holds (0 if it has none)."""
    path = RunDir(cell.out).metrics
    return len(read_rows(path)) if path.exists() else 0


def run_cell(cell: Cell, runner: str, progress: bool = False) -> str:
    """Run, resume or skip one cell; returns what was done ("skipped", "ran", "resumed from update U")."""
    done_before = rows_done(cell)
    if done_before >= cell.config.updates:
        return "skipped"
    check_resumable(cell.config, cell.out)
    if runner == "cluster":  # every process resumes from its own checkpoints (logs/coordinator.log says where)
        code = run_cluster(cell.config, cell.out, progress=progress)
        if code != 0:
            raise RuntimeError(f"cell {cell.name}: ss-cluster exited with code {code} (logs in {cell.out}/logs)")
        return "resumed from its checkpoints" if done_before else "ran"
    sim = Simulation(cell.config, cell.out)
    start = sim.resume()
    sim.run(progress=progress)
    return f"resumed from update {start}" if start else "ran"


def result_row(cell: Cell) -> dict[str, object]:
    """The cell's results.csv row: final metrics (mean of the last 10% of rows)."""
    final = final_metrics(cell.out)
    return {"env": cell.env, "algo": cell.label, "seed": cell.seed, "episodes": int(final["episodes"]),
            "normalized_return": final["normalized_return"], "cc_rate": final.get("cc_rate", ""),
            "equality": final.get("equality", "")}


def write_results(grid: Grid, all_cells: list[Cell]) -> Path:
    """`<out>/results.csv`: one row per finished cell."""
    path = grid.out / "results.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, RESULT_COLUMNS)
        writer.writeheader()
        writer.writerows(result_row(c) for c in all_cells if rows_done(c) >= c.config.updates)
    tmp.replace(path)
    return path


def results_table(results: Path) -> str:
    """results.csv as Markdown: one row per env, one column per algo (in the file's order), each cell the mean
    +- std over seeds of the final normalised return (collective return / (agents x T), the paper's scale)
    and the number of seeds (the env row's `decimals`);
    then the same table of the final equality, for the envs that report it."""
    rows = read_rows(results)
    tables = [_table(rows, "normalized_return")]
    if any(row.get("equality") for row in rows):
        tables.append("Equality (1 - Gini of the agents' returns):\n\n" + _table(rows, "equality"))
    return "\n\n".join(tables)


def _table(rows: list[dict[str, str]], column: str) -> str:
    """One Markdown table of `column`: envs x algos, mean +- std (n) over seeds; envs without it left out."""
    finals: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        if row.get(column):
            finals.setdefault((row["env"], row["algo"]), []).append(float(row[column]))
    envs = list(dict.fromkeys(env for env, _ in finals))
    algos = list(dict.fromkeys(row["algo"] for row in rows))
    lines = ["| env | " + " | ".join(algos) + " |", "|---" * (len(algos) + 1) + "|"]
    for env in envs:
        digits = decimals([v for (e, _), vs in finals.items() if e == env for v in vs])
        cells = []
        for algo in algos:
            values = np.array(finals.get((env, algo), []))
            cells.append(f"{values.mean():.{digits}f} ± {values.std():.{digits}f} (n={len(values)})"
                         if len(values) else "")
        lines.append(f"| {env} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_grid(grid: Grid, progress: bool = True, jobs: int = 1) -> dict[str, str]:
    """Run every cell, `jobs` at a time (writing results.csv after each); returns cell name -> what was done.

    With jobs > 1 each cell runs in its own worker process (spawned, so no torch state is forked) and
    only the overall bar is shown; a failed cell stops the grid once the cells already running end.
    """
    todo = cells(grid)
    done: dict[str, str] = {}
    bar = tqdm(total=len(todo), unit="cell", desc="grid", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    if jobs == 1:
        for cell in todo:
            bar.set_postfix_str(cell.name)
            done[cell.name] = run_cell(cell, grid.runner, progress=progress)
            write_results(grid, todo)
            bar.update()
    else:
        _run_parallel(grid, todo, jobs, done, bar)
    bar.close()
    write_results(grid, todo)
    return done


def _run_parallel(grid: Grid, todo: list[Cell], jobs: int, done: dict[str, str], bar: tqdm) -> None:
    """Run `todo` on a pool of `jobs` spawned workers, filling `done` as cells finish."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        running: dict[Future, Cell] = {pool.submit(run_cell, cell, grid.runner): cell for cell in todo}
        try:
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    cell = running.pop(future)
                    done[cell.name] = future.result()
                    bar.update()
                    if not bar.disable:  # the summary at the end lists every cell anyway
                        bar.write(f"{cell.name:<40} {done[cell.name]}", file=sys.stderr)
                write_results(grid, todo)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            write_results(grid, todo)
            raise


@click.command(name="ss-experiment", epilog="Example: ss-experiment --jobs 2 deploy/paper_comparison.toml   "
                                              "(the file format: coordinator/research/experiment.py's docstring)")
@click.argument("grid_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--no-progress", is_flag=True, help="No progress bars (e.g. in logs).")
@click.option("--dry-run", is_flag=True, help="List the cells and their state; run nothing.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Cells run at a time, each in its own process (e.g. the number of cores for sim cells).")
@click.option("--table", is_flag=True,
              help="Print <out>/results.csv as a Markdown table (mean ± std over seeds); run nothing.")
def main(grid_file: Path, no_progress: bool, dry_run: bool, jobs: int, table: bool) -> None:
    """Run the algorithms x envs x seeds of GRID_FILE, skipping finished cells and resuming others.

    \b
    Grid file (TOML):
      out = "runs/grid"      cells go to <out>/<env>/<algo label>/seed<seed>
      runner = "sim"         or "cluster"
      algos = ["ss", "ippo", {name = "rho0", algo = "ss", rho = 0.0}]
      envs = ["predation"]
      seeds = [0, 1, 2]
      [common]               any RunConfig field for every cell, e.g. episodes = 3200
      [env.predation]        per-env overrides, e.g. agents = 2

    Writes <out>/results.csv: env, algo, seed, episodes, final normalized_return and cc_rate (mean of
    the last 10% of metrics.csv rows).
    """
    try:
        grid = load_grid(grid_file)
        todo = cells(grid)
    except ValueError as err:
        raise click.UsageError(f"{grid_file}: {err}") from err
    if table:
        if not (grid.out / "results.csv").exists():
            raise click.ClickException(f"{grid.out / 'results.csv'} does not exist yet: run the grid first")
        click.echo(results_table(grid.out / "results.csv"))
        return
    if dry_run:
        for cell in todo:
            click.echo(f"{cell.name:<40} {rows_done(cell)}/{cell.config.updates} updates  -> {cell.out}")
        return
    try:
        done = run_grid(grid, progress=not no_progress, jobs=jobs)
    except RuntimeError as err:
        raise click.ClickException(str(err)) from err
    for name, what in done.items():
        click.echo(f"{name:<40} {what}", err=True)
    click.echo(f"results -> {grid.out / 'results.csv'}", err=True)

"""ss-experiment: grid parsing, running, skipping finished cells, resuming partial ones, results.csv."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from coordinator.research.experiment import cells, load_grid, parse_grid, run_grid
from coordinator.sim import Simulation
from protocol.run.csvlog import read_rows
from tests.procs import Processes, script

TINY = """
out = "{out}"
runner = "{runner}"
algos = {algos}
envs = ["predation"]
seeds = {seeds}
[common]
episodes = 8
batch = 4
hidden = [16]
checkpoint_every = 1
[env.predation]
agents = 2
"""


def write_grid(tmp_path: Path, runner: str = "sim", algos: str = '["ss", {name = "rho0", algo = "ss", rho = 0.0}]',
               seeds: str = "[0, 1]") -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(TINY.format(out=tmp_path / "grid", runner=runner, algos=algos, seeds=seeds))
    return path


def test_cells_resolve_with_precedence(tmp_path):
    grid = load_grid(write_grid(tmp_path))
    got = {c.name: c for c in cells(grid)}
    # seed-major: a grid stopped part-way has every algorithm on its first seeds
    assert list(got) == ["predation/ss/seed0", "predation/rho0/seed0", "predation/ss/seed1", "predation/rho0/seed1"]
    rho0 = got["predation/rho0/seed1"]
    assert (rho0.config.rho, rho0.config.agents, rho0.config.hidden, rho0.config.seed) == (0.0, 2, (16,), 1)
    assert got["predation/ss/seed0"].config.rho == 10.0  # the env default, untouched by rho0
    assert rho0.out == tmp_path / "grid" / "predation" / "rho0" / "seed1"


@pytest.mark.parametrize("values, message", [
    ({"algos": ["ss"], "envs": ["predation"], "seeds": [0]}, "out"),
    ({"out": "x", "algos": ["ss"], "envs": ["predation"], "seeds": [0], "runner": "slurm"}, "runner"),
    ({"out": "x", "algos": [], "envs": ["predation"], "seeds": [0]}, "algos"),
    ({"out": "x", "algos": ["ss", "ss"], "envs": ["predation"], "seeds": [0]}, "twice"),
    ({"out": "x", "algos": [{"algo": "ss"}], "envs": ["predation"], "seeds": [0]}, "name"),
    ({"out": "x", "algos": ["ss"], "envs": ["predation"], "seeds": ["0"]}, "seeds"),
    ({"out": "x", "algos": ["ss"], "envs": ["predation"], "seeds": [0], "sedes": [1]}, "unknown grid keys"),
    ({"out": "x", "algos": ["ss"], "envs": ["predation"], "seeds": [0], "env": {"navigation": {}}}, "navigation"),
    ({"out": "x", "algos": ["ss"], "envs": ["predation"], "seeds": [0], "common": {"seed": 3}}, "seed"),
])
def test_bad_grid_values_name_the_problem(values, message):
    with pytest.raises(ValueError, match=message):
        parse_grid(values)


@pytest.mark.parametrize("algos, message", [('["nosuch"]', "unknown algo"),
                                            ('[{name = "x", algo = "ss", rh = 0.0}]', "unknown config keys")])
def test_bad_cell_config_names_the_cell(tmp_path, algos, message):
    grid = load_grid(write_grid(tmp_path, algos=algos, seeds="[0]"))
    with pytest.raises(ValueError, match=message) as err:
        cells(grid)
    assert "cell predation/" in str(err.value)


def test_cli_rejects_bad_grid_file(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text('out = "x"\nalgos = ["ss"]\nenvs = ["predation"]\nseeds = [0]\nrunner = "mpi"\n')
    result = subprocess.run([script("ss-experiment"), str(path)], capture_output=True, text=True)
    assert result.returncode == 2 and "runner must be one of" in result.stderr
    path.write_text("out = [")
    result = subprocess.run([script("ss-experiment"), str(path)], capture_output=True, text=True)
    assert result.returncode == 2 and "cannot read config" in result.stderr


def test_grid_runs_skips_and_resumes(tmp_path):
    grid = load_grid(write_grid(tmp_path))
    todo = cells(grid)
    partial = todo[1]  # rho0/seed0: killed after its first update (its checkpoint says update 1)
    Simulation(dataclasses.replace(partial.config, episodes=4), partial.out).run(progress=False)
    first_row = read_rows(partial.out / "metrics.csv")[0]

    done = run_grid(grid, progress=False)
    assert done == {"predation/ss/seed0": "ran", "predation/ss/seed1": "ran",
                    "predation/rho0/seed0": "resumed from update 1", "predation/rho0/seed1": "ran"}
    resumed = read_rows(partial.out / "metrics.csv")
    assert len(resumed) == 2 and resumed[0] == first_row

    results = read_rows(grid.out / "results.csv")
    assert [(r["env"], r["algo"], r["seed"], r["episodes"]) for r in results] == [
        ("predation", "ss", "0", "8"), ("predation", "rho0", "0", "8"),
        ("predation", "ss", "1", "8"), ("predation", "rho0", "1", "8")]
    for row, cell in zip(results, todo):
        last = read_rows(cell.out / "metrics.csv")[-1]  # 2 rows: the last 10% is the last row
        assert float(row["normalized_return"]) == float(last["normalized_return"])
        assert float(row["cc_rate"]) == float(last["cc_rate"])

    before = {c.name: (c.out / "metrics.csv").stat().st_mtime_ns for c in todo}
    assert set(run_grid(grid, progress=False).values()) == {"skipped"}
    assert before == {c.name: (c.out / "metrics.csv").stat().st_mtime_ns for c in todo}


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_grid_refuses_a_cell_holding_another_config(tmp_path, jobs):
    grid = load_grid(write_grid(tmp_path, algos='["ss"]', seeds="[0]"))
    cell = cells(grid)[0]
    Simulation(dataclasses.replace(cell.config, episodes=4, rho=1.0), cell.out).run(progress=False)
    result = subprocess.run([script("ss-experiment"), "--no-progress", "--jobs", jobs, str(tmp_path / "grid.toml")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "different config (rho)" in result.stderr


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_parallel_cells_equal_sequential_ones(tmp_path):
    """--jobs 2 runs cells in worker processes; every file it writes matches the sequential run's."""
    runs = {}
    for jobs in ("1", "2"):
        root = tmp_path / f"jobs{jobs}"
        root.mkdir()
        grid_file = write_grid(root)
        result = subprocess.run([script("ss-experiment"), "--no-progress", "--jobs", jobs, str(grid_file)],
                                capture_output=True, text=True, timeout=220)
        assert result.returncode == 0, result.stderr
        assert result.stderr.count(" ran") == 4
        runs[jobs] = load_grid(grid_file)
    assert (runs["1"].out / "results.csv").read_bytes() == (runs["2"].out / "results.csv").read_bytes()
    for one, two in zip(cells(runs["1"]), cells(runs["2"])):
        for name in ("metrics.csv", "agents/0/train.csv", "agents/1/train.csv"):
            assert (one.out / name).read_bytes() == (two.out / name).read_bytes(), (one.name, name)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_cluster_runner_cell(tmp_path):
    grid_file = write_grid(tmp_path, runner="cluster", algos='["ippo"]', seeds="[0]")
    cell_dir = tmp_path / "grid" / "predation" / "ippo" / "seed0"
    with Processes(tmp_path / "logs") as procs:
        proc = procs.start("experiment", script("ss-experiment"), "--no-progress", str(grid_file))
        code = proc.wait(timeout=110)
        procs.adopt(cell_dir / "processes.json")
    assert code == 0, procs.log("experiment")
    assert "predation/ippo/seed0                     ran" in procs.log("experiment")
    assert len(read_rows(cell_dir / "metrics.csv")) == 2 and (cell_dir / "processes.json").exists()
    (row,) = read_rows(tmp_path / "grid" / "results.csv")
    assert (row["algo"], row["episodes"]) == ("ippo", "8")


def test_summary_names_runs_by_their_path_below_the_common_parent(tmp_path):
    from coordinator.research.summary import run_names

    cells = [tmp_path / "grid/predation/ss/seed0", tmp_path / "grid/navigation/ss/seed0"]
    assert run_names(cells) == ["predation/ss/seed0", "navigation/ss/seed0"]
    assert run_names([tmp_path / "grid/predation/ss/seed0"]) == ["seed0"]
    assert run_names([tmp_path / "a", tmp_path / "a/b"]) == ["a", "a/b"]


def test_results_table_by_hand(tmp_path):
    from coordinator.research.experiment import results_table

    path = tmp_path / "results.csv"
    path.write_text("env,algo,seed,episodes,normalized_return,cc_rate\n"
                    "predation,ss,0,8,-1.0,0.5\npredation,ss,1,8,-3.0,0.1\npredation,ippo,0,8,-2.5,0.0\n"
                    "navigation,ippo,0,8,-1.25,\n")
    assert results_table(path).splitlines() == [
        "| env | ss | ippo |", "|---|---|---|",
        "| predation | -2.00 ± 1.00 (n=2) | -2.50 ± 0.00 (n=1) |",
        "| navigation |  | -1.25 ± 0.00 (n=1) |"]


def test_results_table_adds_equality_where_an_env_reports_it(tmp_path):
    from coordinator.research.experiment import results_table

    path = tmp_path / "results.csv"
    path.write_text("env,algo,seed,episodes,normalized_return,cc_rate,equality\n"
                    "predation,ss,0,8,-1.5,0.5,\ncleanup,ss,0,8,0.05,,0.5\ncleanup,ss,1,8,0.07,,0.7\n"
                    "cleanup,ippo,0,8,0.0,,1.0\nharvest,ss,0,8,0.0006,,0.8\n")
    returns, equality = results_table(path).split("\n\n", 1)
    assert returns.splitlines()[2:] == ["| predation | -1.50 ± 0.00 (n=1) |  |",
                                        "| cleanup | 0.060 ± 0.010 (n=2) | 0.000 ± 0.000 (n=1) |",
                                        "| harvest | 0.0006 ± 0.0000 (n=1) |  |"]
    assert equality.splitlines()[0].startswith("Equality")
    assert equality.splitlines()[2:] == ["| env | ss | ippo |", "|---|---|---|",
                                         "| cleanup | 0.60 ± 0.10 (n=2) | 1.00 ± 0.00 (n=1) |",
                                         "| harvest | 0.800 ± 0.000 (n=1) |  |"]


def test_decimals_show_small_results_apart():
    from coordinator.research.summary import decimals

    assert decimals([-1.0, 0.2]) == 2
    assert decimals([0.99, -0.5]) == 3
    assert decimals([0.01, 0.0]) == 3
    assert decimals([0.0099, -0.0003]) == 4

"""ss-plot: finding and grouping runs, every figure from tiny real runs, the approach share from audit logs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from coordinator.research import plots
from coordinator.research.experiment import parse_grid, run_grid
from coordinator.research.plots import Run, find_runs, group_runs, plot_all, run_label, study_groups
from coordinator.research.suggestions import approach_share, approach_share_given, replayed_states
from envserver.worlds import make_world
from protocol.audit.log import AuditLog
from protocol.wire.codec import encode
from protocol.run.config import RunConfig, load_toml, write_toml
from protocol.wire.messages import Kind, Message
from protocol.run.rundir import RunDir
from tests.procs import Processes, script

COMMON = {"episodes": 8, "batch": 4, "hidden": [16], "checkpoint_every": 1}


@pytest.fixture(scope="module")
def grid_root(tmp_path_factory) -> Path:
    """Tiny sim runs: predation (2 agents) ss / rho0 / ippo x 2 seeds, navigation ss, and a comm_every study."""
    root = tmp_path_factory.mktemp("plots")
    run_grid(parse_grid({"out": str(root / "grid"), "algos": ["ss", {"name": "rho0", "algo": "ss", "rho": 0.0}, "ippo"],
                         "envs": ["predation", "navigation"], "seeds": [0, 1], "common": COMMON,
                         "env": {"predation": {"agents": 2}}}), progress=False)
    every2 = {"name": "ss-every2", "algo": "ss", "comm_every": 2}
    run_grid(parse_grid({"out": str(root / "study"), "algos": ["ss", every2], "envs": ["predation"], "seeds": [0],
                         "common": {**COMMON, "agents": 2}}), progress=False)
    return root


def test_runs_are_grouped_by_env_and_label(grid_root):
    groups = group_runs(find_runs([grid_root / "grid"]))
    assert sorted(groups) == [(env, label) for env in ("navigation", "predation") for label in ("ippo", "rho0", "ss")]
    assert all(len(runs) == 2 for runs in groups.values())


def test_labels_from_directory_names_and_config():
    assert run_label(Path("runs/grid/predation/rho0/seed2"), {"algo": "ss"}) == "rho0"
    assert run_label(Path("runs/predation2/ippo-s1"), {"algo": "ippo"}) == "ippo"
    assert run_label(Path("runs/mine"), {"algo": "ss", "rho": 0.0}) == "ss rho=0"
    assert run_label(Path("runs/mine"), {"algo": "ss", "rho": 10.0}) == "ss"


def test_every_figure_is_written_or_skipped_with_a_reason(grid_root, tmp_path):
    results = plot_all([grid_root / "grid"], tmp_path)
    for name in ("1", "2", "3", "4", "5"):
        assert [p.suffix for p in results[name]] == [".png", ".pdf"], (name, results[name])
        assert all(p.stat().st_size > 1000 for p in results[name])
    assert "partners or comm_every" in results["8"]  # no run differs in them
    assert "equality column" in results["equality"]  # neither world reports equality

    study = plot_all([grid_root / "study"], tmp_path / "study", only=("8", "3"))
    assert set(study) == {"3", "8"} and study["8"][0].name == "fig8_partner_study.png"


def test_one_legend_entry_per_algo_when_envs_have_different_seed_counts(grid_root, tmp_path, monkeypatch):
    """A grid stopped part-way has more seeds in one env than another: the shared legend still names each
    algo once, and each panel's title says how many seeds it averages."""
    drawn = []
    monkeypatch.setattr(plots, "save", lambda fig, out, name: drawn.append(fig) or [])
    groups = group_runs(find_runs([grid_root / "grid"]))
    groups[("predation", "ss")] = groups[("predation", "ss")][:1]
    plots.fig1_training_curves(groups, tmp_path)
    (fig,) = drawn
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["ss", "rho0", "ippo"]
    assert [ax.get_title() for ax in fig.axes] == ["navigation: training curves (n=2)",
                                                   "predation: training curves (n=1-2)"]


def test_the_study_compares_each_protocol_with_runs_that_keep_the_other_at_its_default():
    def run(name: str, **study) -> Run:
        return Run(Path(name), name, {"env": "predation", "algo": "ss", **study}, [])

    plain, old, partners2, every2, both = (run("plain", partners=0, comm_every=1), run("old"),
                                           run("p2", partners=2), run("e2", comm_every=2),
                                           run("both", partners=2, comm_every=2))
    runs = [plain, old, partners2, every2, both]
    assert study_groups(runs, "partners") == {("predation", "ss", 0): [plain, old],
                                              ("predation", "ss", 2): [partners2]}
    assert study_groups(runs, "comm_every") == {("predation", "ss", 1): [plain, old],
                                                ("predation", "ss", 2): [every2]}


def test_the_equality_figure_is_drawn_from_cleanup_runs(tmp_path):
    run_grid(parse_grid({"out": str(tmp_path / "grid"), "algos": ["ippo"], "envs": ["cleanup"], "seeds": [0, 1],
                         "common": {"episodes": 4, "batch": 2, "hidden": [16], "agents": 2}}), progress=False)
    results = plot_all([tmp_path / "grid"], tmp_path / "figures", only=("equality",))
    assert [p.name for p in results["equality"]] == ["fig_equality.png", "fig_equality.pdf"]
    assert all(p.stat().st_size > 1000 for p in results["equality"])


def test_figures_are_skipped_without_their_runs(grid_root, tmp_path):
    results = plot_all([grid_root / "grid" / "navigation"], tmp_path)
    assert isinstance(results["1"], list) and isinstance(results["2"], list)
    assert "2-agent predation" in results["3"]
    assert "rho = 0" in results["4"]


def test_cli(grid_root, tmp_path):
    result = subprocess.run([script("ss-plot"), str(grid_root / "grid"), "--out", str(tmp_path), "--figure", "1"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "fig1_training_curves.pdf").exists() and "Fig. 1:" in result.stdout
    result = subprocess.run([script("ss-plot"), str(tmp_path), "--out", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "no run directories" in result.stderr


# ---- the approach share, from hand-written audit logs whose answer is known -------------------------


def _append(log: AuditLog, seq: int, msg: Message, dest: str) -> None:
    log.append(dest=dest, endpoint="tcp://127.0.0.1:1", topic=None, kind=msg.kind.value, seq=seq,
               round=msg.round, step=msg.step, frames=[encode(msg)])


def test_approach_share_reads_obs_and_round0_suggestions(tmp_path):
    """2 agents, B = 2 worlds, T = 2 steps, K = 3 rounds; agent 1's suggestions for agent 0."""
    batch, steps, k = 2, 2, 3
    rd = RunDir(tmp_path)
    rd.make(2)
    write_toml(RunConfig(env="predation", agents=2, batch=batch, episodes=4, iterations=k), rd.config)
    # s^t[b] = [x_0 - x_tar, x_1 - x_tar] / 30; agent 0 approaches with +1 where x_0 <= x_tar
    x0 = {0: np.array([[-0.1, 0.2], [0.3, 0.0]]), 1: np.array([[0.0, 0.5], [0.4, -0.2]])}  # update -> [t, b]
    states = {(update, t): np.stack([xs[t], np.full(batch, 0.7)], axis=1).astype(np.float32)  # [B, N]
              for update, xs in x0.items() for t in range(steps)}
    # p(+1) for rows t*B + b; the approach action is 1, 0, 0, 1 in both updates
    p_right = {0: [0.9, 0.2, 0.3, 0.4], 1: [0.1, 0.1, 0.7, 0.8]}  # p(approach) > 0.5: 3 of 4, then 2 of 4
    agent = AuditLog(rd.audit(1))
    for update, p in p_right.items():
        for r in range(k):  # rounds 1, 2 carry the opposite suggestions: only round 0 counts
            probs = np.array(p, np.float32) if r == 0 else 1 - np.array(p, np.float32)
            body = {"to": 0, "probs": np.stack([1 - probs, probs], axis=1)}
            round_id = update * k + r
            _append(agent, round_id, Message(Kind.SUGG, "r", 1, round_id, body, round=round_id), "agent:0")
    agent.close()
    episodes, share = approach_share_given(states, rd, load_toml(rd.config))
    assert episodes.tolist() == [2.0, 4.0]
    assert share.tolist() == [0.75, 0.5]


def test_the_states_are_replayed_from_the_agents_actions(tmp_path):
    """The world, re-run from the run's seed with the STEP actions of the agents' audit logs, shows the states
    the agents saw (what the env server sent them as OBS)."""
    rd = RunDir(tmp_path)
    rd.make(2)
    write_toml(RunConfig(env="predation", agents=2, batch=2, episodes=4, seed=9), rd.config)
    world, rng = make_world("predation", 2, 2, 9), np.random.default_rng(0)
    logs, expected = [AuditLog(rd.audit(i)) for i in range(2)], {}
    for update in range(2):
        result = world.reset()
        for t in range(world.spec.horizon):
            expected[(update, t)] = result.obs[0]
            joint = rng.integers(0, 2, size=(2, 2))
            for i, log in enumerate(logs):
                msg = Message(Kind.STEP, "r", i, update * 100 + t, {"episode": update, "actions": joint[i]}, step=t + 1)
                _append(log, msg.seq, msg, "envserver")
            result = world.step(joint)
    for log in logs:
        log.close()
    states = replayed_states(rd, load_toml(rd.config))
    assert states.keys() == expected.keys()
    assert all(np.array_equal(states[key], expected[key]) for key in expected)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_approach_share_of_a_real_cluster(tmp_path):
    with Processes(tmp_path / "logs") as procs:
        proc = procs.start("cluster", script("ss-cluster"), "--env", "predation", "--agents", "2", "--episodes", "8",
                           "--batch", "4", "--no-progress", "--out", str(tmp_path / "run"))
        assert proc.wait(timeout=110) == 0, procs.log("cluster")
        procs.adopt(tmp_path / "run" / "processes.json")
    (run,) = find_runs([tmp_path / "run"])
    episodes, share = approach_share(run)
    assert episodes.tolist() == [4.0, 8.0]
    assert ((share >= 0) & (share <= 1)).all()

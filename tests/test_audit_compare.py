"""ss-audit --compare: bytes per agent per episode by algorithm, from real ss and ippo clusters."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from protocol.audit.compare import compare, run_traffic
from protocol.audit.report import discover, summarise
from tests.procs import Processes, script

pytestmark = pytest.mark.slow  # real multi-process clusters

EPISODES, AGENTS = 8, 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One tiny 2-agent predation cluster per algorithm (ss-cluster, stopped by pid whatever happens)."""
    root = tmp_path_factory.mktemp("compare")
    out = {algo: root / algo for algo in ("ss", "ippo")}
    with Processes(root / "logs") as procs:
        for algo, run in out.items():
            proc = procs.start(algo, script("ss-cluster"), "--env", "predation", "--agents", str(AGENTS),
                               "--episodes", str(EPISODES), "--batch", "4", "--algo", algo, "--no-progress",
                               "--out", str(run))
            code = proc.wait(timeout=100)
            procs.adopt(run / "processes.json")
            assert code == 0, procs.log(algo)
    return out


def test_bytes_per_agent_episode_match_the_logs(runs):
    ss = run_traffic(runs["ss"])
    assert (ss.algo, ss.agents, ss.episodes) == ("ss", AGENTS, EPISODES)
    agent_logs = [s for s in discover(runs["ss"]) if s.role == "agent"]
    dist_bytes = sum(summarise(s.path).sent["DIST"].bytes for s in agent_logs)
    assert ss.per_agent_episode()["DIST"] == dist_bytes / (AGENTS * EPISODES)


def test_ratio_to_ss(runs):
    rows = {r.algo: r for r in compare([run_traffic(runs["ippo"]), run_traffic(runs["ss"])])}
    assert rows["ss"].ratio == 1.0
    assert {"DIST", "SUGG"} <= set(rows["ss"].by_kind) and not {"DIST", "SUGG"} & set(rows["ippo"].by_kind)
    assert 0 < rows["ippo"].ratio < 1  # IPPO sends only env traffic (RESET/STEP) and control
    assert rows["ippo"].ratio == pytest.approx(rows["ippo"].total / rows["ss"].total)


def test_cli_table_and_json(runs):
    table = subprocess.run([script("ss-audit"), "--compare", str(runs["ss"]), str(runs["ippo"])],
                           capture_output=True, text=True)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[1].split()[:3] == ["algo", "runs", "total"] and lines[2].split()[-1] == "1.000"
    as_json = subprocess.run([script("ss-audit"), "--compare", "--json", str(runs["ippo"])],
                             capture_output=True, text=True)
    assert as_json.returncode == 0, as_json.stderr
    got = json.loads(as_json.stdout)["algos"]["ippo"]
    assert got["ratio_to_ss"] is None and got["runs"] == 1 and got["bytes_per_agent_episode"]["total"] > 0
    alone = subprocess.run([script("ss-audit"), "--compare", str(runs["ippo"])], capture_output=True, text=True)
    assert "no SS run given" in alone.stdout


def test_cli_errors(runs, tmp_path):
    two = subprocess.run([script("ss-audit"), str(runs["ss"]), str(runs["ippo"])], capture_output=True, text=True)
    assert two.returncode == 2 and "several only with --compare" in two.stderr
    bare = subprocess.run([script("ss-audit"), "--compare", str(tmp_path)], capture_output=True, text=True)
    assert bare.returncode == 1 and "no config.toml" in bare.stderr

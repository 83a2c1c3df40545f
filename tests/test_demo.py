"""`ss-demo`: SS and its rho = 0 ablation as two real clusters, and the ten-second summary."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from protocol.run.config import RunConfig, load_toml
from tests.procs import script


@pytest.mark.slow
def test_demo_runs_both_clusters_and_summarises_what_was_shared(tmp_path: Path) -> None:
    out = subprocess.run([script("ss-demo"), "--out", str(tmp_path), "--episodes", "64", "--no-progress"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "2-agent Cooperative Predation, 64 episodes per run" in text
    for label in ("SS ", "SS without suggestions (rho = 0)"):
        assert re.search(re.escape(label) + r"\s+\d\.\d\d\s+-?\d+\.\d\d", text), label
    # what each agent sent: its DIST and SUGG (4 updates x K = 3 rounds), its actions to the env server
    for agent in (0, 1):
        assert re.search(rf"agent {agent}: DIST 12 msgs .*, SUGG 12 msgs .*; actions to the env server 124 msgs",
                         text), text
    assert "no reward, value, parameter or observation left any agent" in text
    ss, rho0 = (RunConfig.from_dict(load_toml(tmp_path / name / "config.toml")) for name in ("ss", "rho0"))
    assert (ss.rho, rho0.rho, ss.agents, ss.episodes) == (10.0, 0.0, 2, 64)
    assert (tmp_path / "ss" / "processes.json").exists()  # a real cluster, not the in-process simulator


def test_demo_refuses_bad_options(tmp_path: Path) -> None:
    out = subprocess.run([script("ss-demo"), "--agents", "1", "--out", str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "--agents" in out.stderr and "Traceback" not in out.stderr

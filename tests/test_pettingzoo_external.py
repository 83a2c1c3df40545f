"""A third-party PettingZoo world (MPE2's simple_spread) served through `--env module:factory`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.procs import run_sim_and_cluster

pytest.importorskip("mpe2", reason="install the 'pettingzoo' extra")
pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]  # real multi-process clusters


def test_mpe_simple_spread_trains_identically_in_sim_and_cluster(tmp_path: Path) -> None:
    opts = ["--env", "mpe2.simple_spread_v3:parallel_env?N=3&max_cycles=25", "--agents", "3",
            "--episodes", "4", "--batch", "2", "--seed", "3"]
    sim, cluster, listed = run_sim_and_cluster(tmp_path, opts)
    assert (cluster / "metrics.csv").read_bytes() == (sim / "metrics.csv").read_bytes()
    assert len((sim / "metrics.csv").read_text().splitlines()) == 3
    assert sum(p["role"] == "agent" for p in listed) == 3
    assert "DIST" in (cluster / "agents/0/audit.log").read_text()

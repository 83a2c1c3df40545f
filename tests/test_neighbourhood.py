"""Neighbourhood protocols (paper A.4): m random partners per round, exchange every k-th update."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.exchange import Outgoing
from agent.neighbourhood import communicates, partners
from coordinator.sim import Simulation
from protocol.run.config import resolve
from tests.procs import run_sim_and_cluster


def test_partners_are_m_distinct_neighbours_drawn_reproducibly() -> None:
    nbrs = (0, 2, 3, 5, 7)
    draws = {partners(1, r, 4, nbrs, 2) for r in range(40)}
    assert all(len(p) == 2 and p <= set(nbrs) for p in draws)
    assert len(draws) > 5  # they vary with the round
    assert partners(1, 3, 4, nbrs, 2) == partners(1, 3, 4, nbrs, 2)
    assert partners(1, 3, 4, nbrs, 0) == partners(1, 3, 4, nbrs, 9) == frozenset(nbrs)


def test_communicates_every_kth_update() -> None:
    assert [communicates(u, 3) for u in range(7)] == [True, False, False, True, False, False, True]


def test_learners_exchange_only_with_partners_and_skip_silent_updates(tmp_path: Path) -> None:
    config = resolve(None, {"env": "predation", "agents": 4, "episodes": 8, "batch": 2, "partners": 1,
                            "comm_every": 2})
    sim = Simulation(config, tmp_path / "run")
    sim.open(progress=False)
    try:
        sim.rollout()  # every agent's loop now asks for round 0 of update 0
        first = sim.requests[0].expect
        assert set(first) == {1, 2, 3}  # every neighbour's DIST (actions) in the first round ...
        assert sum(len(kinds) == 2 for kinds in first.values()) == 1  # ... and DIST+SUGG from one partner
        sim.play(lambda requests: requests[0].round_id == 1)
        later = sim.requests[0].expect
        assert len(later) == 1 and next(iter(later.values())) == {"DIST", "SUGG"}
        sent = sum(len(request.out.addressed) for request in sim.requests.values())
        assert sent == 4  # one suggestion per agent per round, to whoever picked its sender
        sim.train()
        sim.rollout()  # the second update (index 1) has no exchange at all
        assert sim.requests[0].expect == {} and sim.requests[0].out == Outgoing()
    finally:
        sim.close()
    rows = (tmp_path / "run" / "agents" / "0" / "train.csv").read_text().splitlines()
    assert float(rows[1].split(",")[rows[0].split(",").index("comm_gaps")]) == 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cluster_matches_sim_with_partners_and_comm_every(tmp_path: Path) -> None:
    opts = ["--env", "predation", "--agents", "3", "--episodes", "8", "--batch", "2", "--seed", "4",
            "--partners", "1", "--comm-every", "2"]
    run_sim_and_cluster(tmp_path, opts)
    for name in ("metrics.csv", "agents/0/train.csv", "agents/2/train.csv"):
        assert (tmp_path / "cl" / name).read_bytes() == (tmp_path / "sim" / name).read_bytes(), name
    kinds = [json.loads(line)["kind"] for line in (tmp_path / "cl/agents/1/audit.log").read_text().splitlines()]
    # 4 updates, 2 with exchange, 3 rounds each: one DIST per round at most, one SUGG per round at most
    assert 2 <= kinds.count("DIST") <= 6 and kinds.count("SUGG") <= 6

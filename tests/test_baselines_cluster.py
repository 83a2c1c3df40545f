"""Every baseline under `ss-cluster` (one OS process per agent, ZeroMQ): bit-identical to `ss-sim`, and its
audit verifies and shows exactly the kinds the baseline declares."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from protocol.audit.outbox import AGENT_POLICIES
from tests.procs import run_sim_and_cluster, script

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]  # real multi-process clusters

AGENTS = 3
# what each baseline sends on top of IPPO's kinds (the env and control traffic every agent has)
DECLARED = {"vs": {"ADV"}, "vps": {"CRITIC_PARAMS"}, "ps": {"DIST", "POLICY_PARAMS"}, "imr": set()}
IPPO_KINDS = {k.value for k in AGENT_POLICIES["ippo"].kinds}


@pytest.mark.parametrize("env", ["predation", "navigation"])
@pytest.mark.parametrize("algo", sorted(DECLARED))
def test_baseline_cluster_matches_sim_and_audits_to_its_kinds(tmp_path: Path, algo: str, env: str) -> None:
    small = tmp_path / "small.toml"
    small.write_text("hidden = [16]\n")
    opts = ["--env", env, "--agents", str(AGENTS), "--episodes", "4", "--batch", "2", "--seed", "3", "--algo", algo,
            "--config", str(small)]
    sim, out, _ = run_sim_and_cluster(tmp_path, opts)
    assert (out / "metrics.csv").read_bytes() == (sim / "metrics.csv").read_bytes()
    for i in range(AGENTS):
        assert (out / f"agents/{i}/train.csv").read_bytes() == (sim / f"agents/{i}/train.csv").read_bytes()

    audit = subprocess.run([script("ss-audit"), str(out), "--verify", "--json"], capture_output=True, text=True,
                           timeout=60)
    assert audit.returncode == 0, audit.stderr
    report = json.loads(audit.stdout)
    assert report["verified"] is True
    assert set(report["agents"]) == {str(i) for i in range(AGENTS)}
    for i, agent in report["agents"].items():
        sent = set(agent["sent"])
        assert "SUGG" not in sent and "REWARD" not in sent
        assert sent - IPPO_KINDS == DECLARED[algo], (i, sorted(sent))
        for kind in DECLARED[algo]:  # broadcast on the agent's own topic of that kind
            dests = {dest for dest, kinds in agent["to"].items() if kind in kinds}
            assert dests == {f"subscribers:{kind.lower()}/{i}/"}, (kind, dests)

"""`ss-audit --cross-check`: receivers' receipts against senders' audit logs, on a real cluster; one real
message delivered to a non-addressee makes it fail, naming sender, receiver and record."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import zmq

from protocol.audit.cross import addressed_to, cross_check
from protocol.audit.log import Record, iter_records
from tests.procs import Processes, script, start_by_hand, wait_until


def test_addressees() -> None:
    line = {0: (1,), 1: (0, 2), 2: (1,)}
    assert addressed_to("agent:1", "agent 1", line) and not addressed_to("agent:1", "agent 2", line)
    assert addressed_to("subscribers:dist/1/", "agent 2", line)
    assert not addressed_to("subscribers:dist/0/", "agent 2", line)  # not 0's neighbour
    assert addressed_to("envserver", "envserver", line) and not addressed_to("envserver", "coordinator", line)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cross_check_passes_clean_and_fails_on_one_extra_delivery(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with Processes(tmp_path / "logs") as procs:
        _, started = start_by_hand(procs, out, episodes=60)
        assert all(p.wait(timeout=300) == 0 for p in started.values())
    clean = subprocess.run([script("ss-audit"), "--cross-check", str(out)], capture_output=True, text=True,
                           timeout=120)
    assert clean.returncode == 0, clean.stderr
    assert "every message received was sent to its receiver" in clean.stdout
    result = cross_check(out)
    assert result.matched["agent 0", "agent 1"] > 0 and result.matched["envserver", "agent 2"] > 0
    assert ("agent 0", "agent 2") not in result.matched  # 0 and 2 are not neighbours on the line

    # a second run, during which agent 0's first suggestion to agent 1 is also delivered to the env server
    out2 = tmp_path / "run2"
    with Processes(tmp_path / "logs2") as procs:
        _, started = start_by_hand(procs, out2, episodes=60, env_options=("-v",))
        audit = out2 / "agents/0/audit.log"
        sugg = lambda: [r for r in iter_records(audit) if isinstance(r, Record) and r.kind == "SUGG"]  # noqa: E731
        wait_until(lambda: audit.exists() and sugg(), 300, "agent 0's first suggestion")
        record = sugg()[0]
        env = re.search(r"serving .* at (tcp://\S+)", procs.log("envserver")).group(1)
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.connect(env)
        sock.send(record.frames[-1])  # test-only raw send: the very bytes agent 0 sent agent 1
        wait_until(lambda: "SUGG from src 0" in procs.log("envserver"), 60, "the env server to get it")
        ctx.destroy(linger=1000)
        assert all(p.wait(timeout=300) == 0 for p in started.values())
    tampered = subprocess.run([script("ss-audit"), "--cross-check", str(out2)], capture_output=True, text=True,
                              timeout=120)
    assert tampered.returncode == 1
    assert f"envserver received agent 0's record {record.index} (SUGG to agent:1), not addressed to it" \
        in tampered.stderr, tampered.stderr

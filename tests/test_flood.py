"""Bounded inbound: hundreds of MiB of junk at every bound socket of a running cluster (the coordinator's and
the env server's ROUTERs, every agent's XPUB) leave every process alive with its memory bounded."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import zmq

from tests.procs import Processes, start_by_hand, wait_until

FLOOD_MIB = 200
CHUNK = 256 * 2**10
BOUND_MIB = 24  # growth allowed per process (measured: < 1 MiB; 64 MiB at an XPUB without its limits)


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def flood(ctx: zmq.Context, kind: int, endpoint: str) -> int:
    """Send FLOOD_MIB of junk from one socket of `kind`; returns the bytes ZeroMQ took (it may block on HWM)."""
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.SNDTIMEO, 2000)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    sent, junk = 0, b"\x07" + b"j" * (CHUNK - 1)  # not a subscription, not msgpack
    try:
        while sent < FLOOD_MIB * 2**20:
            sock.send(junk)
            sent += CHUNK
    except zmq.Again:
        pass  # the target stopped reading from us (HWM) or dropped us: the junk stays with the sender
    sock.close()
    return sent


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_junk_floods_leave_every_process_alive_and_bounded(tmp_path: Path) -> None:
    out = tmp_path / "run"
    ctx = zmq.Context()
    with Processes(tmp_path / "logs") as procs:
        endpoint, started = start_by_hand(procs, out, episodes=1_000_000)
        wait_until(lambda: (out / "metrics.csv").exists() and len((out / "metrics.csv").read_text().splitlines()) > 3,
                   300, "the run to train")
        targets = {"coordinator": (zmq.DEALER, endpoint),
                   "envserver": (zmq.DEALER, re.search(r"START: envserver serving .* at (tcp://\S+)",
                                                       procs.log("envserver")).group(1))}
        for i, ep in re.findall(r"registered agent (\d+) at (tcp://\S+)", procs.log("coordinator")):
            targets[f"agent-{i}"] = (zmq.XSUB, ep)
        assert len(targets) == 5
        before = {name: rss_mib(proc.pid) for name, proc in started.items()}
        sent = {name: flood(ctx, kind, ep) for name, (kind, ep) in targets.items()}
        rows = len((out / "metrics.csv").read_text().splitlines())
        wait_until(lambda: len((out / "metrics.csv").read_text().splitlines()) > rows + 3, 300,
                   "the run to go on training after the flood")
        after = {name: rss_mib(proc.pid) for name, proc in started.items()}
        ctx.destroy(linger=0)
        assert all(proc.poll() is None for proc in started.values()), {n: p.poll() for n, p in started.items()}
        growth = {name: round(after[name] - before[name], 1) for name in started}
        assert all(g < BOUND_MIB for g in growth.values()), (growth, sent)

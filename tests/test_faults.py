"""Bad input and faults: every process logs, counts and drops bad messages, and keeps running."""

from __future__ import annotations

import json
import logging
import re
import subprocess
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from agent.exchange import Outgoing, RoundKinds
from agent.peer_link import PeerLink
from coordinator.launcher import free_port
from protocol.transport import sockets
from protocol.audit.outbox import Outbox
from protocol.transport.inbox import Inbox
from protocol.wire.messages import Kind
from protocol.wire.topics import dist_topic, sugg_topic
from tests.procs import Processes, script, wait_for_updates, wait_until

RUN = "run-test"
ROWS, ACTIONS = 6, 2


@pytest.fixture
def link_and_rogue():
    """Agent 0's real PeerLink subscribed to a publisher that claims to be neighbour 1."""
    ctx = zmq.Context()
    rogue = sockets.xpub(ctx)
    rogue_ep = sockets.bind_random(rogue)
    pub = sockets.xpub(ctx)
    pub_ep = sockets.bind_random(pub)
    inbox = Inbox("agent 0", logging.getLogger("test"), run=RUN)
    link = PeerLink(ctx, 0, pub, pub_ep, {1: rogue_ep}, Outbox("agent", "ss", RUN, 0), inbox, ACTIONS, SS_ROUND)
    seen = set()
    while not {dist_topic(1), sugg_topic(1, 0)} <= seen:  # the link's SUB has subscribed to the rogue
        assert rogue.poll(5000), "no subscription from the agent"
        seen.add(rogue.recv()[1:])
    yield link, rogue, inbox
    link.close()
    for sock in (rogue, pub):
        sock.close(linger=0)
    ctx.term()


def probs(rows: int = ROWS) -> np.ndarray:
    return np.tile(np.array([0.3, 0.7], np.float32), (rows, 1))


SS_ROUND = RoundKinds(broadcast=frozenset({Kind.DIST}), addressed=frozenset({Kind.SUGG}))


def our_round() -> Outgoing:
    dist = {"probs": probs(), "actions": np.zeros(ROWS, np.int64), "behaviour": np.full(ROWS, 0.3, np.float32)}
    return Outgoing(broadcast={Kind.DIST: dist}, addressed={1: {Kind.SUGG: {"to": 1, "probs": probs()}}})


def test_bad_peer_messages_are_dropped_and_the_good_ones_used(link_and_rogue) -> None:
    link, rogue, inbox = link_and_rogue
    as_one = Outbox("agent", "ss", RUN, 1)
    wrong_run = Outbox("agent", "ss", "another-run", 1)
    impostor = Outbox("agent", "ss", RUN, 2)
    dist = {"probs": probs(), "actions": np.ones(ROWS, np.int64), "behaviour": np.full(ROWS, 0.7, np.float32)}
    common = {"dest": "agent:0", "endpoint": "test"}
    raw = [
        [dist_topic(1), b"\xc1 not msgpack"],
        [dist_topic(1), msgpack.packb({"v": 1, "kind": "DIST"})],
        [dist_topic(1)],
        [b"dist/x/", b"junk"],  # never delivered: not a topic the link subscribed to
    ]
    for frames in raw:  # test-only raw sends: junk no Outbox would ever produce
        rogue.send_multipart(frames)
    wrong_run.send(rogue, Kind.DIST, dist, topic=dist_topic(1), round=7, **common)
    impostor.send(rogue, Kind.DIST, dist, topic=dist_topic(1), round=7, **common)  # src 2 on neighbour 1's link
    as_one.send(rogue, Kind.DIST, {"probs": probs(ROWS + 1)}, topic=dist_topic(1), round=7, **common)  # shape
    as_one.send(rogue, Kind.DIST, {"probs": probs(2), "rows": np.ones(ROWS + 1, bool)},
                topic=dist_topic(1), round=7, **common)  # rows: one flag per rollout row, not ROWS + 1
    marked = np.zeros(ROWS, bool)
    marked[:3] = True
    as_one.send(rogue, Kind.SUGG, {"to": 0, "probs": probs(2), "rows": marked},
                topic=sugg_topic(1, 0), round=7, **common)  # 3 rows marked, 2 held
    as_one.send(rogue, Kind.DIST, dist, topic=dist_topic(1), round=6, **common)  # stale round
    as_one.send(rogue, Kind.DIST, dist, topic=dist_topic(1), round=7, **common)  # the good ones
    as_one.send(rogue, Kind.SUGG, {"to": 0, "probs": probs()}, topic=sugg_topic(1, 0), round=7, **common)
    as_one.send(rogue, Kind.DIST, dist, topic=dist_topic(1), round=7, **common)  # duplicate of round 7
    got = link.exchange(7, our_round(), {1: SS_ROUND.all}, ROWS, deadline_s=10.0)
    assert set(got) == {1} and link.book.gaps == 0
    np.testing.assert_array_equal(got[1][Kind.DIST]["actions"], np.ones(ROWS))
    # the duplicate may arrive after the round closed; everything else has been counted by now
    assert inbox.dropped["invalid"] == 7 and inbox.dropped["unknown_sender"] == 1
    assert inbox.dropped["stale"] >= 1


def test_a_silent_neighbour_costs_a_gap_not_a_deadlock(link_and_rogue) -> None:
    link, _, _ = link_and_rogue
    assert link.exchange(0, our_round(), {1: SS_ROUND.all}, ROWS, deadline_s=0.5) == {1: {}}
    assert link.book.gaps == 1


@pytest.mark.slow
def test_junk_at_the_env_server_and_coordinator_changes_nothing(tmp_path: Path) -> None:
    """A cluster under fire from a stranger: the run finishes, bit-identical to ss-sim, drops counted."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    out = tmp_path / "run"
    opts = ["--env", "navigation", "--episodes", "40", "--batch", "2", "--seed", "2"]
    common = ["--coordinator", endpoint, "--out", str(out)]
    ctx = zmq.Context()
    with Processes(tmp_path / "logs") as procs:
        coord = procs.start("coordinator", script("ss-coordinator"), *opts, "--bind", endpoint, "--out", str(out))
        env = procs.start("envserver", script("ss-envserver"), *common, "-v")
        agents = [procs.start(f"agent-{i}", script("ss-agent"), "--id", str(i), *common) for i in range(3)]
        wait_until(lambda: "START: envserver serving" in procs.log("envserver"), 300, "the env server to start")
        env_endpoint = re.search(r"START: envserver serving .* at (tcp://\S+)", procs.log("envserver")).group(1)
        stranger = Outbox("agent", "ss", "ssmarl", 0)  # claims to be agent 0, from its own connection
        try:
            for target in (env_endpoint, endpoint):
                sock = sockets.dealer(ctx)
                sock.connect(target)
                for frame in (b"", b"\x00" * 100, msgpack.packb([1, 2, 3]), msgpack.packb({"v": 99})):
                    sock.send(frame)  # test-only raw sends
                stranger.send(sock, Kind.STEP, {"episode": 0, "actions": np.zeros(2, np.int64)},
                              dest="x", endpoint=target, step=1)
                stranger.send(sock, Kind.HELLO, {"role": "agent", "endpoint": "tcp://127.0.0.1:1"},
                              dest="x", endpoint=target)
                sock.close(linger=1000)
        finally:
            ctx.term()
        for name, proc in [("coordinator", coord), ("envserver", env)] + \
                [(f"agent-{i}", a) for i, a in enumerate(agents)]:
            assert proc.wait(timeout=300) == 0, procs.log(name)
    sim = subprocess.run([script("ss-sim"), *opts, "--out", str(tmp_path / "sim"), "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert sim.returncode == 0, sim.stderr
    assert (out / "metrics.csv").read_bytes() == (tmp_path / "sim/metrics.csv").read_bytes()
    env_drops = json.loads((out / "logs/envserver.received.json").read_text())["dropped"]
    coord_drops = json.loads((out / "logs/coordinator.received.json").read_text())["dropped"]
    assert env_drops.get("invalid", 0) >= 4 and sum(env_drops.values()) >= 6, env_drops
    assert coord_drops.get("invalid", 0) >= 4 and sum(coord_drops.values()) >= 6, coord_drops
    assert "dropped a message" in procs.log("envserver")


@pytest.mark.slow
def test_a_failing_agent_stops_everyone_promptly(tmp_path: Path) -> None:
    """SIGTERM one agent mid-run: it reports STOP, the coordinator stops everyone, nobody waits out a deadline."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    out = tmp_path / "run"
    common = ["--coordinator", endpoint, "--out", str(out)]
    with Processes(tmp_path / "logs") as procs:
        coord = procs.start("coordinator", script("ss-coordinator"), "--env", "predation", "--agents", "3",
                            "--episodes", "100000", "--batch", "2", "--bind", endpoint, "--out", str(out))
        env = procs.start("envserver", script("ss-envserver"), *common)
        agents = [procs.start(f"agent-{i}", script("ss-agent"), "--id", str(i), *common) for i in range(3)]
        wait_for_updates(out, 2)
        agents[1].terminate()
        for name, proc in [("coordinator", coord), ("envserver", env), ("agent-0", agents[0]),
                           ("agent-2", agents[2])]:
            assert proc.wait(timeout=25) != 0, name  # default deadlines are 30 s and more
        assert "stopped the run: agent 1 failed" in procs.log("agent-0")
        assert "terminated by signal" in procs.log("coordinator")

"""CurveZMQ in the runtime (DESIGN.md section 6): a cluster with --keys trains exactly as ss-sim does, its
bytes on the wire are encrypted, and the coordinator admits only the run's keys, each for its own id."""

from __future__ import annotations

import json
from contextlib import ExitStack
import re
import subprocess
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from coordinator.launcher import free_port
from coordinator.server import Coordinator
from protocol.transport import sockets
from protocol.audit.log import iter_records
from protocol.audit.outbox import Outbox
from protocol.run.config import RunConfig
from protocol.transport.keys import KeyRing, client_keys, generate_keypair, load_keys
from protocol.wire.codec import encode
from protocol.wire.messages import COORDINATOR_ID, ENVSERVER_ID, Kind, Message
from protocol.run.rundir import RunDir
from tests.procs import Processes, script, wait_until
from tests.wiretap import WireTap

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]  # real multi-process clusters


def make_run_keys(directory: Path, agents: int) -> None:
    result = subprocess.run([script("ss-keys"), str(directory), "--agents", str(agents)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def spy_on_agents(ctx: zmq.Context, keys: Path, procs: Processes) -> dict[tuple[int, int], zmq.Socket]:
    """For every agent i, a SUB for every run key that is not i's neighbour (line 0-1-2: agent 0 at agent 2
    and back; the env server; the coordinator) asking i's publisher for everything."""
    endpoints: dict[int, str] = {}
    wait_until(lambda: len(endpoints.update(registered(procs.log("coordinator"))) or endpoints) == 3, 300,
               "every agent to register")
    spies = {}
    for i, endpoint in endpoints.items():
        for who in {ENVSERVER_ID, COORDINATOR_ID, 2 - i} - {1}:  # agent 1 is everyone's neighbour
            if who == i:
                continue
            sock = sockets.sub(ctx, curve=client_keys(KeyRing(keys, who), i))
            for t in (b"", b"dist/%d/" % i, *(b"sugg/%d/%d/" % (i, j) for j in range(3))):
                sock.setsockopt(zmq.SUBSCRIBE, t)
            sock.connect(endpoint)
            spies[(i, who)] = sock
    return spies


def registered(log: str) -> dict[int, str]:
    return {int(i): ep for i, ep in re.findall(r"registered agent (\d+) at (tcp://\S+)", log)}


def test_a_curve_cluster_matches_sim_and_its_control_channel_is_encrypted(tmp_path: Path) -> None:
    """Bit-identical to ss-sim, encrypted, and every agent's messages reach only its neighbours: keys of
    the run that are not entitled (a non-neighbour, the env server, the coordinator) subscribe to
    everything at every agent and receive nothing."""
    keys, out = tmp_path / "keys", tmp_path / "run"
    make_run_keys(keys, 3)
    opts = ["--env", "navigation", "--episodes", "6", "--batch", "2", "--seed", "4"]
    port = free_port()
    ctx = zmq.Context()
    with WireTap(port) as tap, Processes(tmp_path / "logs") as procs:
        common = ["--coordinator", tap.endpoint, "--out", str(out), "--keys", str(keys)]
        coord = procs.start("coordinator", script("ss-coordinator"), *opts, "--bind", f"tcp://127.0.0.1:{port}",
                            "--out", str(out), "--keys", str(keys))
        others = [("envserver", procs.start("envserver", script("ss-envserver"), *common))]
        others += [(f"agent-{i}", procs.start(f"agent-{i}", script("ss-agent"), "--id", str(i), *common))
                   for i in range(3)]
        try:
            spies = spy_on_agents(ctx, keys, procs)
            for name, proc in [("coordinator", coord), *others]:
                assert proc.wait(timeout=300) == 0, procs.log(name)
            leaked = {key: sock.recv_multipart()[0] for key, sock in spies.items() if sock.poll(0)}
        finally:
            ctx.destroy(linger=0)
    assert not leaked, leaked
    refused = [json.loads((out / "agents" / str(i) / "received.json").read_text())["dropped"].get("unauthorized", 0)
               for i in range(3)]
    assert all(n >= 2 for n in refused), refused  # each agent refused its spies' subscriptions
    sim = subprocess.run([script("ss-sim"), *opts, "--out", str(tmp_path / "sim"), "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert sim.returncode == 0, sim.stderr
    assert (out / "metrics.csv").read_bytes() == (tmp_path / "sim/metrics.csv").read_bytes()

    assert len(tap.connections) == 4  # the env server and three agents, each to the coordinator
    for conn in tap.connections:
        assert conn.to_server[12:32].rstrip(b"\0") == b"CURVE"  # the ZMTP greeting's mechanism
        # plaintext would show the msgpack'd run id, fields and the run config (tests/test_audit_exact.py);
        # HELLO, READY and MESSAGE do appear: they are the names of CurveZMQ's own handshake commands
        for word in (b"ssmarl", b"endpoint", b"tcp://", b"agent"):
            assert word not in conn.to_server, word
        for word in (b"ssmarl", b"DIRECTORY", b"navigation", b"peers"):
            assert word not in conn.to_client, word


@pytest.fixture
def coordinator(tmp_path: Path):
    keys = tmp_path / "keys"
    make_run_keys(keys, 2)
    generate_keypair(tmp_path / "elsewhere", "agent0")  # a valid CURVE key that is not the run's
    config = RunConfig(env="navigation", agents=2, episodes=2, batch=2)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    run_dir = RunDir(tmp_path / "run")
    run_dir.make(config.agents)
    coord = Coordinator(config, "ssmarl", endpoint, run_dir, keys=KeyRing(keys, COORDINATOR_ID))
    ctx = zmq.Context()
    yield coord, ctx, endpoint, keys, tmp_path / "elsewhere"
    ctx.destroy(linger=0)
    coord.close()


def hello(ctx: zmq.Context, endpoint: str, secret: Path, server_public: Path, claims: int) -> zmq.Socket:
    sock = sockets.dealer(ctx, curve=load_keys(secret, server_public))
    sock.connect(endpoint)
    Outbox("agent", "ss", "ssmarl", claims).send(sock, Kind.HELLO, {"role": "agent", "endpoint": "tcp://x:1"},
                                                 dest="coordinator", endpoint=endpoint)
    return sock


def serve_until(coord: Coordinator, condition, timeout_s: float = 30) -> None:
    for _ in range(int(timeout_s * 10)):
        if condition():
            return
        coord.poll(100)
    raise AssertionError("timed out")


def test_the_coordinator_admits_each_run_key_only_for_its_own_id(coordinator) -> None:
    coord, ctx, endpoint, keys, elsewhere = coordinator
    server = keys / "coordinator.key"
    monitor = coord.sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    hello(ctx, endpoint, elsewhere / "agent0.key_secret", server, claims=0)  # not the run's key: ZAP refuses
    assert monitor.poll(30_000), "the stranger's handshake was not refused"
    hello(ctx, endpoint, keys / "agent0.key_secret", server, claims=1)  # agent 0's key claiming agent 1
    serve_until(coord, lambda: coord.inbox.dropped["unknown_sender"] == 1)
    hello(ctx, endpoint, keys / "agent1.key_secret", server, claims=1)  # agent 1, as itself
    serve_until(coord, lambda: 1 in coord.members)
    coord.sock.disable_monitor()  # libzmq's end of the monitor closes, so the context can terminate
    monitor.close()
    assert set(coord.members) == {1}
    assert dict(coord.inbox.received) == {("HELLO", 1): 1}
    assert dict(coord.inbox.dropped) == {"unknown_sender": 1}


def test_the_local_cluster_script_runs_cl_with_keys(tmp_path: Path) -> None:
    """deploy/local-cluster.sh starts the central learner for --algo cl and passes SS_KEYS to everyone."""
    keys, out = tmp_path / "keys", tmp_path / "run"
    result = subprocess.run([script("ss-keys"), str(keys), "--agents", "2", "--cl"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    opts = ["--env", "predation", "--agents", "2", "--episodes", "4", "--batch", "2", "--algo", "cl"]
    deploy = Path(__file__).resolve().parents[1] / "deploy/local-cluster.sh"
    with Processes(tmp_path / "logs") as procs:
        proc = procs.start("local", "env", f"PATH={Path(script('ss-agent')).parent}:/usr/bin:/bin",
                           f"SS_COORDINATOR_PORT={free_port()}", f"SS_KEYS={keys}", "bash", str(deploy),
                           str(out), *opts)
        assert proc.wait(timeout=300) == 0, procs.log("local")
    sim = subprocess.run([script("ss-sim"), *opts, "--out", str(tmp_path / "sim"), "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert sim.returncode == 0, sim.stderr
    assert (out / "metrics.csv").read_bytes() == (tmp_path / "sim/metrics.csv").read_bytes()
    assert (out / "logs/learner.train.csv").read_bytes() == (tmp_path / "sim/logs/learner.train.csv").read_bytes()
    for name in ("coordinator", "envserver", "learner", "agent-0", "agent-1"):
        assert "CurveZMQ on" in (out / f"logs/{name}.log").read_text(), name


def test_the_data_path_of_a_curve_cluster_is_encrypted(tmp_path: Path) -> None:
    """Every connection to the env server and to each agent's publisher (behind wiretaps) is CurveZMQ and
    shows none of our protocol's plaintext: no run id, topic, field name or kind."""
    keys, out = tmp_path / "keys", tmp_path / "run"
    make_run_keys(keys, 3)
    coordinator = f"tcp://127.0.0.1:{free_port()}"
    with ExitStack() as stack:
        taps = {name: stack.enter_context(WireTap(free_port())) for name in ("envserver", "0", "1", "2")}
        procs = stack.enter_context(Processes(tmp_path / "logs"))
        common = ["--coordinator", coordinator, "--out", str(out), "--keys", str(keys)]
        started = [procs.start("coordinator", script("ss-coordinator"), "--env", "navigation", "--episodes", "6",
                               "--batch", "2", "--bind", coordinator, "--out", str(out), "--keys", str(keys)),
                   procs.start("envserver", script("ss-envserver"), *common,
                               "--bind", f"tcp://127.0.0.1:{taps['envserver'].target_port}",
                               "--advertise", taps["envserver"].endpoint)]
        started += [procs.start(f"agent-{i}", script("ss-agent"), "--id", str(i), *common,
                                "--bind", f"tcp://127.0.0.1:{taps[str(i)].target_port}",
                                "--advertise", taps[str(i)].endpoint) for i in range(3)]
        for proc in started:
            assert proc.wait(timeout=300) == 0
        for tap in taps.values():
            tap.close()
    # needles of 5+ bytes: a 3-byte one like b"OBS" turns up in a megabyte of ciphertext by chance (2^-24 a byte)
    needles = [b"ssmarl", b"dist/", b"sugg/", b"probs", b"actions", b"episode", b"reward",
               *(msgpack.packb("kind") + msgpack.packb(kind) for kind in ("DIST", "SUGG", "STEP", "OBS"))]
    rd = RunDir(out)
    plaintext = b"".join(frame for log in (rd.process_audit("envserver"), *(rd.audit(i) for i in range(3)))
                         for record in iter_records(log) for frame in getattr(record, "frames", None) or ())
    plaintext += encode(Message(Kind.OBS, "run", ENVSERVER_ID, 0, step=1, body={  # OBS are audited as hashes
        "episode": 0, "to": 0, "obs": np.zeros((2, 3), np.float32), "reward": np.zeros(2, np.float32),
        "terminated": np.zeros(2, bool), "truncated": np.zeros(2, bool), "mask": np.zeros((2, 1), bool),
        "default_used": False}))
    assert [needle for needle in needles if needle not in plaintext] == []  # on the wire unless encrypted
    for name, tap in taps.items():
        talked = [c for c in tap.connections if len(c.to_server) >= 64]  # past the greeting (a connection
        assert len(talked) >= (3 if name == "envserver" else 1), name  # may close before it: a retry)
        for conn in talked:
            assert conn.to_server[12:32].rstrip(b"\0") == b"CURVE", name
            for needle in needles:
                assert needle not in conn.to_server and needle not in conn.to_client, (name, needle)

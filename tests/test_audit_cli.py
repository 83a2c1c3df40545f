"""`ss-audit` and `ss-keys` on a small run directory written by real Outbox sends over loopback."""

from __future__ import annotations

import json
import stat
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import zmq
from click.testing import CliRunner, Result

from protocol.transport import sockets
from protocol.audit.outbox import Outbox
from protocol.audit.log import AuditLog
from protocol.cli import audit_main, keys_main
from protocol.run.config import RunConfig, write_toml
from protocol.wire.messages import ENVSERVER_ID, Kind
from protocol.run.rundir import RunDir
from protocol.wire.topics import dist_topic, sugg_topic

RUN = "cli-run"
ROWS = 2


def build_run(root: Path, algo: str = "ss") -> dict[str, dict]:
    """Two SS agents and an env server send through Outboxes; returns the expected `--json` agents."""
    rundir = RunDir(root)
    rundir.make(2)
    write_toml(RunConfig(agents=2, algo=algo), rundir.config)
    ctx = zmq.Context()
    router = sockets.router(ctx)
    router_ep = sockets.bind_random(router)
    expected: dict[str, dict] = {}
    alive = []  # keep every agent's sockets open until the env server has answered
    try:
        for i in (0, 1):
            pub, dealer = sockets.xpub(ctx), sockets.dealer(ctx, routing_id=b"agent-%d" % i)
            alive += [pub, dealer]
            pub_ep = sockets.bind_random(pub)
            dealer.connect(router_ep)
            to: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
            with AuditLog(rundir.audit(i)) as log:
                outbox = Outbox("agent", "ss", RUN, i, log)
                sends = [
                    (dealer, Kind.HELLO, {"role": "agent", "endpoint": pub_ep}, "coordinator", {}),
                    (dealer, Kind.STEP, {"episode": 0, "actions": np.array([i], np.int64)}, "envserver",
                     {"step": 0}),
                ]
                for r in (0, 1):
                    sends += [
                        (pub, Kind.DIST, {"probs": np.full((ROWS, 2), 0.5, np.float32)},
                         f"subscribers:dist/{i}/", {"topic": dist_topic(i), "round": r}),
                        (pub, Kind.SUGG, {"to": 1 - i, "probs": np.full((ROWS, 2), 0.5, np.float32)},
                         f"agent:{1 - i}", {"topic": sugg_topic(i, 1 - i), "round": r}),
                    ]
                for sock, kind, body, dest, extra in sends:
                    before = outbox.counts.get(kind)
                    sent_bytes = before.bytes if before else 0
                    endpoint = pub_ep if sock is pub else router_ep
                    outbox.send(sock, kind, body, dest=dest, endpoint=endpoint, **extra)
                    to[dest][kind.value][0] += 1
                    to[dest][kind.value][1] += outbox.counts[kind].bytes - sent_bytes
            expected[str(i)] = {
                "sent": {k.value: {"messages": t.messages, "bytes": t.bytes}
                         for k, t in sorted(outbox.counts.items(), key=lambda kv: kv[0].value)},
                "to": {d: {k: {"messages": m, "bytes": b} for k, (m, b) in sorted(kinds.items())}
                       for d, kinds in sorted(to.items())},
            }
        with AuditLog(rundir.process_audit("envserver")) as log:  # the env server answers agent 0
            for _ in range(4):  # both agents' HELLO and STEP; the router now knows both peers
                assert router.poll(5000)
                router.recv_multipart()
            obs = {"episode": 0, "to": 0, "obs": np.ones((1, 3), np.float32), "reward": np.array([-1.0], np.float32),
                   "terminated": np.zeros(1, bool),
           "truncated": np.zeros(1, bool), "mask": np.zeros((1, 1), bool), "default_used": False}
            Outbox("envserver", "ss", RUN, ENVSERVER_ID, log).send(
                router, Kind.OBS, obs, dest="agent:0", endpoint=router_ep, routing_id=b"agent-0", step=0)
    finally:
        ctx.destroy(linger=0)
    return expected


def run(*args: str) -> Result:
    return CliRunner().invoke(audit_main, [str(a) for a in args])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("run")
    return root, build_run(root)


def test_table_lists_every_sender_kind_and_destination(run_dir: tuple[Path, dict]) -> None:
    root, expected = run_dir
    result = run(root)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "algo ss" in out and "agent 0: 6 records" in out and "agent 1: 6 records" in out
    assert "envserver: 1 record\n" in out
    dist = expected["0"]["sent"]["DIST"]
    assert any(line.split() == ["all", "destinations", "DIST", "2", str(dist["bytes"])] for line in out.splitlines())
    assert any(line.split()[:3] == ["subscribers:dist/0/", "DIST", "2"] for line in out.splitlines())
    header = next(line for line in out.splitlines() if "destination" in line)
    assert header.split() == ["destination", "kind", "messages", "bytes"]


def test_json_structure_matches_what_was_sent(run_dir: tuple[Path, dict]) -> None:
    root, expected = run_dir
    plain = run(root, "--json")
    assert plain.exit_code == 0 and json.loads(plain.stdout) == {"verified": False, "agents": expected}
    verified = run(root, "--json", "--verify")
    assert verified.exit_code == 0 and json.loads(verified.stdout) == {"verified": True, "agents": expected}


def test_verify_passes_on_honest_run(run_dir: tuple[Path, dict]) -> None:
    result = run(run_dir[0], "--verify")
    assert result.exit_code == 0 and "verified: 3 logs" in result.stdout and result.stderr == ""


def test_verify_fails_naming_agent_and_record(tmp_path: Path) -> None:
    build_run(tmp_path)
    log = RunDir(tmp_path).audit(1)
    lines = log.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"round":0', b'"round":7')
    log.write_bytes(b"".join(lines))
    result = run(tmp_path, "--verify")
    assert result.exit_code == 1
    assert "FAIL agent 1" in result.stderr and "record 2: hash does not match" in result.stderr
    assert "('DIST', 2, 7, None)" in result.stderr  # the edit also no longer matches the recorded frames
    assert all("agent 1" in line and "record 2:" in line for line in result.stderr.splitlines())
    assert json.loads(run(tmp_path, "--verify", "--json").stdout)["verified"] is False


def test_verify_fails_when_the_algorithm_forbids_a_kind(tmp_path: Path) -> None:
    build_run(tmp_path, algo="ippo")  # the config says IPPO, but the agents shared DIST and SUGG
    result = run(tmp_path, "--verify")
    assert result.exit_code == 1
    fails = [line for line in result.stderr.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 8 and all("is not allowed" in f for f in fails)
    assert "FAIL agent 0" in fails[0] and "record 2: kind DIST is not allowed" in fails[0]


def test_show_decodes_records(run_dir: tuple[Path, dict]) -> None:
    result = run(run_dir[0], "--show", "0", "--kind", "dist", "--limit", "1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("#2 ") and "DIST seq 2 round 0 -> subscribers:dist/0/" in lines[0]
    assert "topic dist/0/" in lines[0]
    assert lines[2] == f"  envelope: kind DIST run '{RUN}' src 0 seq 2 round 0"
    assert lines[3].split() == ["probs", "float32", "[2,", "2]", "[0.5,", "0.5,", "0.5,", "0.5]"]
    assert lines[-1] == "... (more records; raise --limit)" and sum(line.startswith("#") for line in lines) == 1
    env = run(run_dir[0], "--show", "envserver")
    assert "OBS seq 0 step 0 -> agent:0" in env.stdout and "reward" in env.stdout


def test_missing_logs_and_unknown_sender_fail(tmp_path: Path, run_dir: tuple[Path, dict]) -> None:
    empty = run(tmp_path)
    assert empty.exit_code == 1 and "no audit logs" in empty.stderr
    unknown = run(run_dir[0], "--show", "9")
    assert unknown.exit_code == 1 and "no audit log for '9'" in unknown.stderr


def test_help_has_an_example() -> None:
    result = CliRunner().invoke(audit_main, ["--help"])
    assert result.exit_code == 0 and "ss-audit runs/pred8 --verify" in result.stdout


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq built without CURVE")
def test_keys_makes_keypairs_with_private_secrets(tmp_path: Path) -> None:
    result = CliRunner().invoke(keys_main, [str(tmp_path / "keys"), "--name", "agent0", "--name", "envserver"])
    assert result.exit_code == 0, result.output
    for name in ("agent0", "envserver"):
        secret = tmp_path / "keys" / f"{name}.key_secret"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert (tmp_path / "keys" / f"{name}.key").is_file() and str(secret) in result.stdout
    again = CliRunner().invoke(keys_main, [str(tmp_path / "keys"), "--name", "agent0"])
    assert again.exit_code != 0  # an existing secret is never overwritten

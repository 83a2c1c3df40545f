"""`ss-audit` on real `ss-cluster` runs: a clean run verifies and tallies its traffic; editing, deleting
or damaging any part of an agent's audit log fails verification, naming the agent and the record."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from protocol.run.rundir import RunDir
from tests.procs import Processes, script

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]  # real multi-process clusters

AGENTS = 3


def cluster_run(root: Path, *options: str) -> Path:
    """A small predation run of `ss-cluster` (3 agents, 2 updates of 2 episodes); returns its directory."""
    out = root / "run"
    with Processes(root / "launcher") as procs:
        cluster = procs.start("cluster", script("ss-cluster"), "--env", "predation", "--agents", str(AGENTS),
                              "--episodes", "4", "--batch", "2", *options, "--out", str(out), "--no-progress")
        try:
            code = cluster.wait(timeout=240)
        except subprocess.TimeoutExpired:
            procs.adopt(out / "processes.json")  # stop its children too, by pid
            raise
        assert code == 0, procs.log("cluster")
    return out


def ss_audit(run_dir: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([script("ss-audit"), str(run_dir), *flags], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def ss_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cluster_run(tmp_path_factory.mktemp("ss"))


def audited(result: subprocess.CompletedProcess) -> dict:
    """The `--verify --json` report, after checking its documented structure."""
    report = json.loads(result.stdout)
    assert set(report) == {"verified", "agents"} and isinstance(report["verified"], bool)
    assert set(report["agents"]) == {str(i) for i in range(AGENTS)}
    for agent in report["agents"].values():
        assert set(agent) == {"sent", "to"}
        for tallies in [agent["sent"], *agent["to"].values()]:
            for tally in tallies.values():
                assert set(tally) == {"messages", "bytes"} and tally["messages"] > 0 and tally["bytes"] > 0
        for kind, tally in agent["sent"].items():  # the destinations add up to the totals
            assert tally == {field: sum(to[kind][field] for to in agent["to"].values() if kind in to)
                             for field in ("messages", "bytes")}
    return report


def test_a_clean_ss_run_verifies_and_shows_its_exchange(ss_run: Path) -> None:
    result = ss_audit(ss_run, "--verify", "--json")
    assert result.returncode == 0, result.stderr
    report = audited(result)
    assert report["verified"] is True
    for i, agent in report["agents"].items():
        assert {"DIST", "SUGG", "STEP", "RESET"} <= set(agent["sent"])
        assert "REWARD" not in agent["sent"]
        assert set(agent["to"][f"subscribers:dist/{i}/"]) == {"DIST"}
        suggested = {dest for dest, kinds in agent["to"].items() if "SUGG" in kinds}
        assert suggested and f"agent:{i}" not in suggested and all(d.startswith("agent:") for d in suggested)
    tables = ss_audit(ss_run, "--verify")
    assert tables.returncode == 0 and "verified:" in tables.stdout


# ---- tampering: always on a copy of the run --------------------------------------------------

VICTIM = 1
SAME_CLASS = (b"0123456789", b"abcdef", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"ghijklmnopqrstuvwxyz", b"+/")


def replace_char(line: bytes, at: int) -> bytes:
    """The line with the character at `at` changed to another of its class: the line stays well-formed."""
    alphabet = next(a for a in SAME_CLASS if line[at] in a)
    return line[:at] + bytes([alphabet[(alphabet.index(line[at]) + 1) % len(alphabet)]]) + line[at + 1:]


def value_at(line: bytes, key: str, offset: int = 0) -> int:
    """Index of the `offset`-th character of the value of `"key":` (strings: after the opening quote)."""
    at = line.index(f'"{key}":'.encode()) + len(key) + 3
    return at + (line[at:at + 1] == b'"') + offset


def last_frame_middle(line: bytes) -> int:
    """Index of a character well inside the last base64 frame (clear of its padding)."""
    return line.index(b'"]', line.index(b'"frames":[')) - 40


def first_dist_after(lines: list[bytes], start: int) -> int:
    return next(n for n in range(start, len(lines)) if b'"kind":"DIST"' in lines[n])


# what -> (which record, the edit of its line, a failure the verifier must report; n is that record)
FLIPS = {
    "first byte of the log": (lambda lines: 0, lambda line: bytes([line[0] ^ 0x01]) + line[1:],
                              "record {n}: not a record line"),
    "first record, its destination": (lambda lines: 0, lambda line: replace_char(line, value_at(line, "dest")),
                                      "record {n}: hash does not match"),
    "middle record, its time": (lambda lines: len(lines) // 2,
                                lambda line: replace_char(line, value_at(line, "t")),
                                "record {n}: hash does not match"),
    "last record, its kind": (lambda lines: len(lines) - 1,
                              lambda line: replace_char(line, value_at(line, "kind", 1)),
                              "record {n}: hash does not match"),
    "inside a base64 frame": (lambda lines: first_dist_after(lines, len(lines) // 2),
                              lambda line: replace_char(line, last_frame_middle(line)),
                              "record {n}: frame 1: SHA-256 does not match"),
    "inside the hash": (lambda lines: len(lines) // 3,
                        lambda line: replace_char(line, value_at(line, "hash", 10)),
                        "record {next}: chain broken"),
}


def tamper(run: Path, into: Path, edit) -> int:
    """Copy the run to `into`, apply `edit(lines) -> (lines, record index)` to the victim's log; the index."""
    shutil.copytree(run, into)
    log = RunDir(into).audit(VICTIM)
    lines = log.read_bytes().splitlines()
    edited, index = edit(lines)
    assert edited != lines
    log.write_bytes(b"\n".join(edited) + b"\n")
    return index


def assert_fails_at(run: Path, index: int, reason: str) -> None:
    """`ss-audit --verify` fails, only on the victim's log, first at record `index` (and says `reason`)."""
    result = ss_audit(run, "--verify")
    assert result.returncode != 0
    failures = [line for line in result.stderr.splitlines() if line.startswith("FAIL")]
    assert failures and all(line.startswith(f"FAIL agent {VICTIM} (") for line in failures), result.stderr
    assert f": record {index}: " in failures[0], result.stderr
    assert reason in result.stderr


@pytest.mark.parametrize("what", FLIPS)
def test_one_changed_byte_fails_verification_naming_agent_and_record(ss_run: Path, tmp_path: Path,
                                                                      what: str) -> None:
    which, change, reason = FLIPS[what]

    def edit(lines: list[bytes]) -> tuple[list[bytes], int]:
        n = which(lines)
        return lines[:n] + [change(lines[n])] + lines[n + 1:], n

    n = tamper(ss_run, tmp_path / "run", edit)
    assert_fails_at(tmp_path / "run", n, reason.format(n=n, next=n + 1))


def test_deleting_a_middle_record_fails_verification(ss_run: Path, tmp_path: Path) -> None:
    def edit(lines: list[bytes]) -> tuple[list[bytes], int]:
        n = len(lines) // 2
        return lines[:n] + lines[n + 1:], n

    n = tamper(ss_run, tmp_path / "run", edit)
    assert_fails_at(tmp_path / "run", n, f"record {n}: chain broken")


def test_an_ss_run_audited_as_ippo_fails_on_its_exchange(ss_run: Path, tmp_path: Path) -> None:
    """The verifier holds the logs to the run's algorithm: under IPPO, DIST and SUGG are not allowed."""
    shutil.copytree(ss_run, tmp_path / "run")
    config = RunDir(tmp_path / "run").config
    config.write_text(config.read_text().replace('algo = "ss"', 'algo = "ippo"'))
    result = ss_audit(tmp_path / "run", "--verify")
    assert result.returncode != 0 and "kind DIST is not allowed" in result.stderr


def test_an_ippo_run_exchanges_nothing(tmp_path: Path) -> None:
    result = ss_audit(cluster_run(tmp_path, "--algo", "ippo"), "--verify", "--json")
    assert result.returncode == 0, result.stderr
    report = audited(result)
    assert report["verified"] is True
    for agent in report["agents"].values():
        assert set(agent["sent"]) == {"HELLO", "READY", "RESET", "STEP", "STOP"}
        assert set(agent["to"]) == {"envserver", "coordinator"}

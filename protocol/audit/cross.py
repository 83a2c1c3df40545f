"""`ss-audit --cross-check RUN`: every message a process received was sent to it, by the sender's own audit.

Senders' audit logs record each outbound message with its destination and the SHA-256 of its frames;
receivers' receipt logs (protocol/transport/inbox.py) record each decodable message they got, with the same digest.
Matching them by the payload frame's digest proves, per message, who sent it and who got it. A receipt
fails the check when no audit log holds that message (forged, or replayed from elsewhere) or when its
receiver is not among the message's addressees: `agent:j` is j alone, `envserver` / `coordinator` /
`learner` that process, `subscribers:<kind>/i/` agent i's neighbours (the candidate set of its topology).
Messages no addressee recorded are counted, not failed: a fault (a killed process, a message in flight at
the end) loses some.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from protocol.audit.log import Record, iter_records
from protocol.audit.report import discover
from protocol.run.config import RunConfig, load_toml
from protocol.run.rundir import RunDir


@dataclass
class CrossCheck:
    """The outcome: receipts matched per (sender, receiver), failures, and sent messages nobody recorded."""

    sent: int = 0
    receipts: int = 0
    matched: Counter = field(default_factory=Counter)  # (sender, receiver) -> messages
    failures: list[str] = field(default_factory=list)
    unreceived: Counter = field(default_factory=Counter)  # sender -> messages no addressee recorded

    @property
    def ok(self) -> bool:
        return not self.failures


def receivers(run_dir: RunDir) -> dict[str, Path]:
    """Receiver name ("agent 3", "envserver", ...) -> its receipt log, for every one the run holds."""
    found = {f"agent {p.parent.name}": p for p in sorted((run_dir.root / "agents").glob("*/received.log"))}
    found.update({p.name.removesuffix(".received.log"): p for p in sorted(run_dir.logs.glob("*.received.log"))})
    return found


def neighbourhoods(run_dir: RunDir) -> dict[int, tuple[int, ...]]:
    """Each agent's candidate neighbours, from the run's config and world (who may subscribe to it)."""
    from envserver.worlds import make_world  # the world's spec says who may be a neighbour
    from protocol.run.topology import resolve_neighbors

    config = RunConfig.from_dict(load_toml(run_dir.config))
    return resolve_neighbors(config, make_world(config.env, config.agents, 1, config.seed).spec)


def addressed_to(dest: str, receiver: str, neighbours: dict[int, tuple[int, ...]]) -> bool:
    """Whether `receiver` is an addressee of a message recorded with destination `dest`."""
    if dest.startswith("agent:"):
        return receiver == f"agent {dest.removeprefix('agent:')}"
    if dest.startswith("subscribers:"):
        publisher = int(dest.split("/")[1])
        return receiver in {f"agent {j}" for j in neighbours.get(publisher, ())}
    return receiver == dest


def cross_check(run: Path) -> CrossCheck:
    """Match every receipt of the run in `run` against the senders' audit logs."""
    rd = RunDir(run)
    neighbours = neighbourhoods(rd)
    result = CrossCheck()
    by_digest: dict[str, tuple[str, Record]] = {}
    for source in discover(run):
        name = f"agent {source.name}" if source.role == "agent" else source.name
        for record in iter_records(source.path):
            if isinstance(record, Record) and record.digests:
                by_digest[record.digests[-1]] = (name, record)
                result.sent += 1
    got: set[str] = set()
    for receiver, path in receivers(rd).items():
        for n, line in enumerate(path.read_text().splitlines()):
            receipt = json.loads(line)
            result.receipts += 1
            found = by_digest.get(receipt["sha256"])
            where = f"{path.name} line {n + 1}: {receipt['kind']} seq {receipt['seq']} claiming src {receipt['src']}"
            if found is None:
                result.failures.append(f"{receiver} received a message no audit log holds ({where})")
                continue
            sender, record = found
            if not addressed_to(record.dest, receiver, neighbours):
                result.failures.append(f"{receiver} received {sender}'s record {record.index} ({record.kind} to "
                                       f"{record.dest}), not addressed to it ({where})")
                continue
            result.matched[sender, receiver] += 1
            got.add(receipt["sha256"])
    for digest, (sender, _) in by_digest.items():
        if digest not in got:
            result.unreceived[sender] += 1
    return result

"""Read a run directory's audit logs for people: find them, tally them, render tables and records."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from protocol.audit.outbox import PROCESS_POLICIES, Tally
from protocol.audit.log import Record, TornTail, iter_records
from protocol.wire.codec import ProtocolError, decode
from protocol.run.rundir import RunDir


MAX_VALUE_CHARS = 200  # a long non-array value (the DIRECTORY's config) is cut for display


@dataclass(frozen=True)
class LogSource:
    """One audit log of a run: `name` is the agent id ("3") or the process role ("envserver")."""

    name: str
    role: str
    src: int | None
    path: Path


def discover(run_dir: str | Path) -> list[LogSource]:
    """Every audit log of a run: agents (by id) first, then the other processes."""
    rundir = RunDir(run_dir)
    agents_dir = rundir.root / "agents"
    ids = sorted(int(p.name) for p in agents_dir.iterdir() if p.name.isdigit()) if agents_dir.is_dir() else []
    sources = [LogSource(str(i), "agent", i, rundir.audit(i)) for i in ids if rundir.audit(i).is_file()]
    sources += [LogSource(role, role, None, rundir.process_audit(role))
                for role in sorted(PROCESS_POLICIES) if rundir.process_audit(role).is_file()]
    return sources


@dataclass
class Summary:
    """What one log says was sent: by kind, and by destination then kind."""

    sent: dict[str, Tally] = field(default_factory=dict)
    to: dict[str, dict[str, Tally]] = field(default_factory=dict)
    records: int = 0
    torn: TornTail | None = None

    def add(self, record: Record) -> None:
        for tally in (self.sent.setdefault(record.kind, Tally()),
                      self.to.setdefault(record.dest, {}).setdefault(record.kind, Tally())):
            tally.messages += 1
            tally.bytes += record.wire_bytes
        self.records += 1

    def to_json(self) -> dict[str, Any]:
        """`{"sent": {KIND: {"messages", "bytes"}}, "to": {dest: {KIND: {...}}}}`."""
        def kinds(tallies: dict[str, Tally]) -> dict[str, dict[str, int]]:
            return {k: {"messages": t.messages, "bytes": t.bytes} for k, t in sorted(tallies.items())}
        return {"sent": kinds(self.sent), "to": {d: kinds(t) for d, t in sorted(self.to.items())}}


def summarise(path: str | Path) -> Summary:
    """Tally one log (raises LogFormatError on a damaged line; a torn tail is noted in `torn`)."""
    summary = Summary()
    for item in iter_records(path):
        if isinstance(item, TornTail):
            summary.torn = item
        else:
            summary.add(item)
    return summary


def format_table(name: str, summary: Summary) -> str:
    """An aligned table of one sender's traffic: totals by kind, then by destination and kind."""
    rows = [("all destinations", kind, t) for kind, t in sorted(summary.sent.items())]
    rows += [(dest, kind, t) for dest, kinds in sorted(summary.to.items()) for kind, t in sorted(kinds.items())]
    header = ("destination", "kind", "messages", "bytes")
    cells = [header] + [(d, k, str(t.messages), str(t.bytes)) for d, k, t in rows]
    widths = [max(len(row[c]) for row in cells) for c in range(4)]
    plural = "" if summary.records == 1 else "s"
    lines = [f"{name}: {summary.records} record{plural}" + (f", {summary.torn}" if summary.torn else "")]
    for row in cells:
        lines.append("  " + "  ".join(
            cell.rjust(w) if c >= 2 else cell.ljust(w) for c, (cell, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def summarise_array(a: np.ndarray, head: int = 6) -> str:
    """`float32 [480, 2] [0.51, 0.49, ...]`: dtype, shape and the first few values."""
    flat = a.reshape(-1)[:head].tolist()
    values = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in flat)
    more = ", ..." if a.size > head else ""
    return f"{a.dtype} {list(a.shape)} [{values}{more}]"


def describe_record(record: Record) -> str:
    """The record's envelope and decoded body, as several readable lines."""
    when = datetime.datetime.fromtimestamp(record.time).isoformat(timespec="milliseconds")
    counter = "".join(f" {n} {v}" for n, v in (("round", record.round), ("step", record.step)) if v is not None)
    lines = [f"#{record.index} {when} {record.kind} seq {record.seq}{counter} -> {record.dest} "
             f"({record.endpoint})" + (f" topic {record.topic}" if record.topic is not None else ""),
             f"  frames: {list(record.lengths)} bytes, sha256 {', '.join(d[:16] for d in record.digests)}"]
    if record.frames is None:
        lines.append("  (payload not recorded: hashes-only log)")
        return "\n".join(lines)
    try:
        msg = decode(record.frames[-1])
    except ProtocolError as err:
        lines.append(f"  payload does not decode: {err.reason}")
        return "\n".join(lines)
    lines.append(f"  envelope: kind {msg.kind.value} run {msg.run!r} src {msg.src} seq {msg.seq}{counter}")
    width = max((len(n) for n in msg.body), default=0)
    for name, value in msg.body.items():
        shown = summarise_array(value) if isinstance(value, np.ndarray) else repr(value)
        shown = shown if len(shown) <= MAX_VALUE_CHARS else shown[: MAX_VALUE_CHARS - 3] + "..."
        lines.append(f"  {name.ljust(width)}  {shown}")
    return "\n".join(lines)

"""The append-only, hash-chained audit log: its on-disk format, writer and reader (DESIGN.md section 7).

Format: one JSON line per outbound message, readable with `cat`, `jq` and `grep`:

    {"n":0,"t":1712.5,"dest":"agent:4","endpoint":"tcp://127.0.0.1:5001","topic":"dist/3/",
     "kind":"DIST","seq":0,"round":0,"step":null,"lens":[7,912],"sha256":["<hex>","<hex>"],
     "frames":["<base64>","<base64>"],"prev":"<hex>","hash":"<hex>"}

`lens`/`sha256`/`frames` describe every frame that went on the wire, in order. In "compressed" mode
`zframes` replaces `frames`: each frame zlib-compressed, then base64 (the reader decompresses them to the
wire's bytes, so `--verify` checks them against `sha256` exactly as it checks `frames`); in "hashes" mode
neither is kept. `hash` = SHA-256 of the record's exact bytes from `{` up to (not including) the
`,"hash":` suffix, closed by `}`; those bytes contain `prev`, the previous record's hash (64 zeros
for the first), so editing, deleting, inserting or reordering any record breaks the chain. Only the
last line may lack its newline: a crash mid-write leaves a torn tail, which the reader reports and
the writer drops on reopen (the record is written before the frames are sent, so a torn record is a
message that never left the process).

Checking one record by hand (prints the same digest as its `hash`; `prev` of the next line must equal it):

    sed -n 1p audit.log | sed 's/,"hash":"[0-9a-f]*"}$/}/' | tr -d '\\n' | sha256sum
    sed -n 1p audit.log | jq -r '.frames[-1]' | base64 -d | sha256sum    # == .sha256[-1]
    sed -n 1p audit.log | jq -r '.zframes[-1]' | base64 -d | zlib-flate -uncompress | sha256sum  # compressed
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from protocol.run.config import AUDIT_MODES

GENESIS = "0" * 64
_HASH_SUFFIX = re.compile(rb',"hash":"([0-9a-f]{64})"\}')
ZLIB_LEVEL = 1  # of "compressed" mode: most of level 9's ratio on our frames at a fraction of its time


class LogFormatError(ValueError):
    """A complete line of the log that is not a well-formed record; `index` names the record."""

    def __init__(self, index: int, reason: str):
        super().__init__(f"record {index}: {reason}")
        self.index = index
        self.reason = reason


@dataclass(frozen=True)
class Record:
    """One parsed record. `hash` is what the record claims; `actual_hash` is what its bytes hash to."""

    index: int
    time: float
    dest: str
    endpoint: str
    topic: str | None
    kind: str
    seq: int
    round: int | None
    step: int | None
    lengths: tuple[int, ...]
    digests: tuple[str, ...]
    frames: tuple[bytes, ...] | None
    prev: str
    hash: str
    actual_hash: str

    @property
    def wire_bytes(self) -> int:
        """Bytes this message put on the wire (every frame)."""
        return sum(self.lengths)


@dataclass(frozen=True)
class TornTail:
    """An unterminated fragment after the last complete record (a crash mid-write)."""

    records: int  # complete records before the fragment
    size: int  # bytes in the fragment

    def __str__(self) -> str:
        where = f"after record {self.records - 1}" if self.records else "before any record"
        return f"torn tail {where} ({self.size} bytes)"


def topic_label(topic: bytes) -> str:
    """The topic as text for the `topic` field (non-ASCII bytes escaped)."""
    return topic.decode("ascii", "backslashreplace")


def frame_digest(frame: bytes) -> str:
    """SHA-256 of one frame, hex."""
    return hashlib.sha256(frame).hexdigest()


_FIELDS = {"n": int, "t": (int, float), "dest": str, "endpoint": str, "topic": (str, type(None)),
           "kind": str, "seq": int, "round": (int, type(None)), "step": (int, type(None)),
           "lens": list, "sha256": list, "prev": str, "hash": str}


def _check_fields(index: int, fields: object) -> dict:
    """The decoded JSON must be exactly the record's fields, each of its type."""
    if (not isinstance(fields, dict) or not _FIELDS.keys() <= fields.keys() <= _FIELDS.keys() | {"frames", "zframes"}
            or {"frames", "zframes"} <= fields.keys()):
        raise LogFormatError(index, "wrong set of fields")
    for name, types in _FIELDS.items():
        if not isinstance(fields[name], types) or isinstance(fields[name], bool):
            raise LogFormatError(index, f"field {name!r} has the wrong type")
    if not all(isinstance(n, int) for n in fields["lens"]):
        raise LogFormatError(index, "field 'lens' is not a list of integers")
    for name in ("sha256", "frames", "zframes"):
        if not all(isinstance(x, str) for x in fields.get(name, ())):
            raise LogFormatError(index, f"field {name!r} is not a list of strings")
    return fields


def _decompressed(index: int, zframes: list[str], lengths: list[int]) -> tuple[bytes, ...]:
    """The frames of a `zframes` field. Each inflates to at most one byte past its recorded length, so a
    damaged or hostile log cannot make the reader inflate more than it claims (verify then reports it)."""
    frames = []
    for k, text in enumerate(zframes):
        limit = (lengths[k] if k < len(lengths) else 0) + 1
        try:
            inflate = zlib.decompressobj()
            frames.append(inflate.decompress(base64.b64decode(text, validate=True), limit))
        except (ValueError, zlib.error):
            raise LogFormatError(index, f"field 'zframes' holds invalid base64 or zlib data (frame {k})") from None
    return tuple(frames)


def parse_record(index: int, line: bytes) -> Record:
    """Parse one complete line (without its newline). Raises LogFormatError; does not check the chain."""
    match = _HASH_SUFFIX.search(line)
    if not line.startswith(b"{") or match is None or match.end() != len(line):
        raise LogFormatError(index, "not a record line (damaged, or bytes after the record)")
    try:
        fields = _check_fields(index, json.loads(line))
    except ValueError as err:
        raise LogFormatError(index, f"not valid JSON ({err})") from None
    frames = fields.get("frames")
    if frames is not None:
        try:
            frames = tuple(base64.b64decode(f, validate=True) for f in frames)
        except ValueError:
            raise LogFormatError(index, "field 'frames' holds invalid base64") from None
    elif "zframes" in fields:
        frames = _decompressed(index, fields["zframes"], fields["lens"])
    return Record(
        index=fields["n"],
        time=float(fields["t"]),
        dest=fields["dest"],
        endpoint=fields["endpoint"],
        topic=fields["topic"],
        kind=fields["kind"],
        seq=fields["seq"],
        round=fields["round"],
        step=fields["step"],
        lengths=tuple(fields["lens"]),
        digests=tuple(fields["sha256"]),
        frames=frames,
        prev=fields["prev"],
        hash=match.group(1).decode(),
        actual_hash=hashlib.sha256(line[: match.start()] + b"}").hexdigest(),
    )


def iter_lines(path: str | Path) -> Iterator[tuple[bytes, bool]]:
    """Yield (line without newline, terminated) for every line of the file; only the last may be unterminated."""
    with open(path, "rb") as f:
        for raw in f:
            if raw.endswith(b"\n"):
                yield raw[:-1], True
            else:
                yield raw, False


def is_torn(fragment: bytes) -> bool:
    """True if an unterminated last line is a cut-short record (no end-of-record marker in it).

    A fragment that does contain the marker is either a whole record whose newline was lost (parsed as
    a record) or a record followed by stray bytes (a damaged record, not a torn one).
    """
    return _HASH_SUFFIX.search(fragment) is None


def iter_records(path: str | Path) -> Iterator[Record | TornTail]:
    """Yield every record in order, then a `TornTail` if the log ends in one.

    Raises LogFormatError on a damaged complete line. Use `protocol.audit.verify.verify_log` to check
    hashes, the chain and the payloads.
    """
    count = 0
    for line, terminated in iter_lines(path):
        if not terminated and is_torn(line):
            yield TornTail(records=count, size=len(line))
            return
        yield parse_record(count, line)
        count += 1


def _encode_record(fields: dict[str, object], frames: Sequence[bytes] | None, prev: str,
                   compress: bool = False) -> tuple[bytes, str]:
    """The exact bytes of a record line and its hash: compact JSON of `fields`, then `frames` (base64; or
    `zframes`, zlib then base64), `prev` and `hash`. The base64 text needs no JSON escaping, so it is
    spliced in as bytes rather than passed through `json.dumps` (the bulk of a record; this halves the
    cost of frame capture)."""
    head = json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()[:-1]
    if frames is not None and compress:
        head += b',"zframes":["' + b'","'.join(base64.b64encode(zlib.compress(f, ZLIB_LEVEL)) for f in frames) + b'"]'
    elif frames is not None:
        head += b',"frames":["' + b'","'.join(base64.b64encode(f) for f in frames) + b'"]'
    body = head + b',"prev":"' + prev.encode() + b'"}'
    digest = hashlib.sha256(body).hexdigest()
    return body[:-1] + b',"hash":"' + digest.encode() + b'"}\n', digest


class AuditLog:
    """Writer: appends one chained record per outbound message and flushes it (fsync if asked).

    Reopening an existing log continues its chain (numbering, previous hash, sequence number); a torn
    tail left by a crash is cut off first. Not thread-safe (nor are the sockets it records).
    `digest_only` kinds are recorded without their frames in either mode: they carry another party's
    private data (the env server's OBS holds agent i's reward and observation, which belong in agent
    i's directory only); their lengths and digests still chain and still match the wire.
    """

    def __init__(self, path: str | Path, mode: str = "frames", fsync: bool = False,
                 digest_only: frozenset[str] = frozenset()):
        if mode not in AUDIT_MODES:
            raise ValueError(f"audit mode must be one of {list(AUDIT_MODES)}, got {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self.fsync = fsync
        self.digest_only = digest_only
        self.count = 0
        self.head = GENESIS
        self.last_seq: int | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._recover()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _recover(self) -> None:
        """Pick up numbering and chain head from an existing log; drop a torn tail."""
        if not self.path.exists():
            return
        kept, last, needs_newline = 0, None, False
        for line, terminated in iter_lines(self.path):
            if not terminated and is_torn(line):
                break
            last, kept, needs_newline = line, kept + len(line) + terminated, not terminated
        if last is not None:
            record = parse_record(self.count, last)
            self.count, self.head, self.last_seq = record.index + 1, record.hash, record.seq
        with open(self.path, "r+b") as f:
            f.truncate(kept)
            if needs_newline:
                f.seek(kept)
                f.write(b"\n")

    def append(
        self,
        *,
        dest: str,
        endpoint: str,
        topic: bytes | None,
        kind: str,
        seq: int,
        round: int | None,
        step: int | None,
        frames: Sequence[bytes],
    ) -> str:
        """Write the record of one message whose wire frames are `frames`; returns the record's hash."""
        fields: dict[str, object] = {
            "n": self.count,
            "t": time.time(),
            "dest": dest,
            "endpoint": endpoint,
            "topic": None if topic is None else topic_label(topic),
            "kind": kind,
            "seq": seq,
            "round": round,
            "step": step,
            "lens": [len(f) for f in frames],
            "sha256": [frame_digest(f) for f in frames],
        }
        kept = self.mode != "hashes" and kind not in self.digest_only
        line, self.head = _encode_record(fields, frames if kept else None, self.head, self.mode == "compressed")
        self._write(line)
        self.count += 1
        self.last_seq = seq
        return self.head

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        if self.fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "AuditLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

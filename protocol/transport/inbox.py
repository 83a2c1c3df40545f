"""The one way inbound frames become messages: decode, validate, check the sender, count or drop.

A bad frame is logged with its reason (and sender/kind when known) and dropped; the process keeps
running. Everything accepted is counted per (kind, sender) so a user can cross-check both ends; with a
receipts file, every decodable message (accepted or dropped) also gets one JSON line there, naming the
sender it claims, its kind and seq, and the SHA-256 of its frame: `ss-audit --cross-check` matches these
against the senders' audit logs.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from protocol.audit.log import frame_digest
from protocol.wire.codec import ProtocolError, decode
from protocol.transport.keys import claims_own_id
from protocol.wire.messages import Kind, Message


class Inbox:
    """Decodes inbound frames for one process and keeps receive-side accounting."""

    def __init__(self, owner: str, log: logging.Logger, run: str | None = None, receipts: Path | None = None):
        self.owner = owner
        self.log = log
        self.run = run
        self.receipts = open(receipts, "a", buffering=1) if receipts is not None else None  # line-buffered
        self.received: Counter[tuple[str, int]] = Counter()
        self.received_bytes: Counter[tuple[str, int]] = Counter()
        self.dropped: Counter[str] = Counter()

    def accept(
        self,
        frame: bytes,
        *,
        kinds: frozenset[Kind] | set[Kind],
        src: int | set[int] | None = None,
        origin: str = "?",
        user_id: str | None = None,
    ) -> Message | None:
        """The decoded message if it is valid, of an expected kind and from an expected sender (with CURVE:
        the sender whose key it came with, `user_id`), else None."""
        try:
            msg = decode(frame, run=self.run)
        except ProtocolError as err:
            return self.drop("invalid", f"{err} ({len(frame)} bytes from {origin})")
        if self.receipts is not None:
            self.receipts.write(json.dumps({"src": msg.src, "kind": msg.kind.value, "seq": msg.seq,
                                            "sha256": frame_digest(frame)}) + "\n")
        if msg.kind not in kinds:
            return self.drop("unexpected_kind", f"{msg.kind.value} from src {msg.src} via {origin}")
        allowed = {src} if isinstance(src, int) else src
        if allowed is not None and msg.src not in allowed:
            return self.drop("unknown_sender", f"{msg.kind.value} claims src {msg.src} via {origin}")
        if not claims_own_id(user_id, msg.src):
            return self.drop("unknown_sender", f"{msg.kind.value} claims src {msg.src} but came with the key "
                                               f"of {user_id} via {origin}")
        self.received[(msg.kind.value, msg.src)] += 1
        self.received_bytes[(msg.kind.value, msg.src)] += len(frame)
        return msg

    def drop(self, reason: str, detail: str) -> None:
        """Log and count a dropped message."""
        self.dropped[reason] += 1
        self.log.warning("%s dropped a message: %s: %s", self.owner, reason, detail)
        return None

    def summary(self) -> dict[str, object]:
        """Received messages/bytes by kind and sender, and drops by reason."""
        by_kind: dict[str, dict[str, dict[str, int]]] = {}
        for (kind, src), n in sorted(self.received.items()):
            by_kind.setdefault(kind, {})[str(src)] = {
                "messages": n, "bytes": self.received_bytes[(kind, src)],
            }
        return {"received": by_kind, "dropped": dict(self.dropped)}

    def close(self) -> None:
        """Close the receipts file (if any)."""
        if self.receipts is not None:
            self.receipts.close()

    def write_summary(self, path: Path) -> None:
        """Write the summary as JSON (atomically), added to the one a previous process left in `path` (a
        resumed run): like the audit log, it then covers every session of the run directory."""
        summary = self.summary()
        if path.exists():
            summary = merged(json.loads(path.read_text()), summary)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True))
        tmp.replace(path)


def merged(a: dict, b: dict) -> dict:
    """Two summaries (nested dicts of counts) added up, key by key."""
    out = dict(a)
    for key, value in b.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) else out.get(key, 0) + value
    return out

"""Pub/sub topics (DESIGN.md section 5). Every topic ends in "/" so that no agent id's topic is a
prefix of another's: a subscription to `dist/1/` never matches `dist/10/`."""

from __future__ import annotations

from protocol.wire.codec import ProtocolError
from protocol.wire.messages import PEER_KINDS, BASELINE_KINDS, Kind

# kinds that travel between agents over pub/sub, by topic prefix ("dist", "critic_params", ...)
TOPIC_KINDS = {k.value.lower(): k for k in PEER_KINDS | BASELINE_KINDS}


def topic(kind: Kind, src: int, dst: int | None = None) -> bytes:
    """b"<kind>/<src>/" for a message to every subscriber, b"<kind>/<src>/<dst>/" for one addressee."""
    if kind.value.lower() not in TOPIC_KINDS:
        raise ValueError(f"{kind.value} does not travel over pub/sub")
    if dst is None:
        return b"%s/%d/" % (kind.value.lower().encode(), _agent_id(src))
    return b"%s/%d/%d/" % (kind.value.lower().encode(), _agent_id(src), _agent_id(dst))


def dist_topic(src: int) -> bytes:
    """Topic of agent `src`'s action distributions: b"dist/<src>/"."""
    return topic(Kind.DIST, src)


def sugg_topic(src: int, dst: int) -> bytes:
    """Topic of agent `src`'s suggestion for agent `dst`: b"sugg/<src>/<dst>/"."""
    return topic(Kind.SUGG, src, dst)


def parse_topic(topic: bytes) -> tuple[str, int, int | None]:
    """(kind, src, dst or None) of a topic; raise ProtocolError unless it is exactly canonical.

    SUGG topics always name an addressee, DIST topics never; other peer kinds may do either."""
    parts = topic.split(b"/") if isinstance(topic, bytes) else []
    ids = _ids(parts[1:-1]) if len(parts) in (3, 4) and parts[-1] == b"" else None
    name = parts[0].decode("ascii", "replace") if parts else ""
    if ids is not None and name in TOPIC_KINDS and (name, len(ids)) not in (("dist", 2), ("sugg", 1)):
        return name, ids[0], ids[1] if len(ids) == 2 else None
    raise ProtocolError(f"bad topic {topic[:40]!r}" if isinstance(topic, bytes) else
                        f"topic must be bytes, got {type(topic).__name__}")


def _agent_id(value: int) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"agent id must be an int >= 0, got {value!r}")
    return value


def _ids(parts: list[bytes]) -> list[int] | None:
    """Canonical decimal ids (no sign, no leading zeros), or None."""
    if not all(p.isdigit() and (p == b"0" or not p.startswith(b"0")) and len(p) <= 18 for p in parts):
        return None
    return [int(p) for p in parts]

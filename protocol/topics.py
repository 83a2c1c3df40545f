"""Pub/sub topics (DESIGN.md section 5). Every topic ends in "/" so that no agent id's topic is a
prefix of another's: a subscription to `dist/1/` never matches `dist/10/`."""

from __future__ import annotations

from protocol.codec import ProtocolError


def dist_topic(src: int) -> bytes:
    """Topic of agent `src`'s action distributions: b"dist/<src>/"."""
    return b"dist/%d/" % _agent_id(src)


def sugg_topic(src: int, dst: int) -> bytes:
    """Topic of agent `src`'s suggestion for agent `dst`: b"sugg/<src>/<dst>/"."""
    return b"sugg/%d/%d/" % (_agent_id(src), _agent_id(dst))


def parse_topic(topic: bytes) -> tuple[str, int, int | None]:
    """(kind, src, dst or None) of a topic; raise ProtocolError unless it is exactly canonical."""
    parts = topic.split(b"/") if isinstance(topic, bytes) else []
    ids = _ids(parts[1:-1]) if len(parts) in (3, 4) and parts[-1] == b"" else None
    if ids is not None and parts[0] == b"dist" and len(ids) == 1:
        return "dist", ids[0], None
    if ids is not None and parts[0] == b"sugg" and len(ids) == 2:
        return "sugg", ids[0], ids[1]
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

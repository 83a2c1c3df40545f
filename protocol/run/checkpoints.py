"""Checkpoint files that survive a crash at any instant, and the resume point a whole run agrees on.

Every process of a run (each agent, the env server's world, CL's central learner) checkpoints on the same
schedule, but not at the same instant: a crash can leave agent 0 at update 8 and the world at update 4.
So each checkpoint file keeps its previous version beside it (`checkpoint.pt` and `checkpoint.pt.prev`),
and a run resumes from the newest update that *every* process still holds. In lockstep no process gets
more than one checkpoint ahead of another, so the last two versions always share one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

Reader = Callable[[Path], dict[str, Any]]


def previous(path: Path) -> Path:
    """Where the previous version of `path` is kept."""
    return path.with_name(path.name + ".prev")


def save_keeping_previous(path: Path, write: Callable[[Path], None]) -> None:
    """`write` the new version to a temporary file, move the current one to `.prev`, then the new one in.

    A crash at any point leaves whole files only: the new version, the old one, or both."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    if path.exists():
        os.replace(path, previous(path))
    os.replace(tmp, path)


def discard(path: Path) -> None:
    """Remove every version of `path` (a run that starts over must not resume into an older one later)."""
    for candidate in (path, previous(path)):
        candidate.unlink(missing_ok=True)


def versions(path: Path, read: Reader) -> dict[int, dict[str, Any]]:
    """The saved versions of `path` (current and previous) by their "update"; {} if there are none."""
    found = {}
    for candidate in (previous(path), path):
        if candidate.exists():
            state = read(candidate)
            found[int(state["update"])] = state
    return found


def restore(load: Callable[[dict[str, Any]], None], saved: Mapping[int, dict[str, Any]], start: int,
            path: Path) -> None:
    """`load` the version of update `start` (the one START named); with `start` 0 (a fresh run) discard
    every old version of `path` instead, so that this run can never later resume into an older one."""
    if start == 0:
        discard(path)
        return
    if start not in saved:
        raise RuntimeError(f"START says resume from update {start}, but {path} holds updates {sorted(saved)}")
    load(saved[start])


def resume_point(available: Mapping[str, set[int] | frozenset[int] | list[int]]) -> int:
    """The newest update every process holds a checkpoint of (process name -> its checkpoint updates).

    0 when no process has any (a fresh start); ValueError naming each process's updates when they
    share none (a mix of fresh and checkpointed processes, or checkpoints of different runs)."""
    if not any(available.values()):
        return 0
    common = set.intersection(*(set(updates) for updates in available.values()))
    if not common:
        held = ", ".join(f"{name}: {sorted(updates) or 'none'}" for name, updates in available.items())
        raise ValueError(f"checkpoints disagree (no update that every process holds; {held}); cannot resume")
    return max(common)


def save_json(path: Path, state: dict[str, Any]) -> None:
    """A JSON checkpoint (the world's), keeping the previous version."""
    save_keeping_previous(path, lambda tmp: tmp.write_text(json.dumps(state)))


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())

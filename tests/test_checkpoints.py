"""Checkpoint files keep their previous version; a run resumes from the newest update all processes hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol.run.checkpoints import discard, previous, read_json, restore, resume_point, save_json, versions


def test_each_save_keeps_exactly_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "world_checkpoint.json"
    assert versions(path, read_json) == {}
    for update in (1, 2, 3):
        save_json(path, {"update": update, "x": update * 10})
    assert versions(path, read_json) == {2: {"update": 2, "x": 20}, 3: {"update": 3, "x": 30}}
    assert json.loads(previous(path).read_text())["update"] == 2
    assert not path.with_name(path.name + ".tmp").exists()
    discard(path)
    assert not path.exists() and not previous(path).exists() and versions(path, read_json) == {}


def test_a_crash_between_the_two_renames_leaves_the_older_version(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    save_json(path, {"update": 1})
    save_json(path, {"update": 2})
    path.replace(previous(path))  # update 2 moved aside, update 3's file never moved in
    assert set(versions(path, read_json)) == {2}


def test_resume_point_by_hand() -> None:
    assert resume_point({"agent 0": set(), "world": set()}) == 0  # nobody has one: a fresh start
    assert resume_point({"agent 0": {4, 8}, "agent 1": {4, 8}, "world": {8, 12}}) == 8
    assert resume_point({"agent 0": {4, 8}, "agent 1": {8}, "world": {4, 8}}) == 8
    assert resume_point({"agent 0": [4, 8], "world": [4]}) == 4
    with pytest.raises(ValueError, match=r"agent 1: none"):
        resume_point({"agent 0": {4, 8}, "agent 1": set(), "world": {4, 8}})
    with pytest.raises(ValueError, match=r"agent 0: \[1, 2\], world: \[3, 4\]"):
        resume_point({"agent 0": {1, 2}, "world": {3, 4}})


def test_restore_loads_the_named_update_or_discards_on_a_fresh_start(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    save_json(path, {"update": 1})
    save_json(path, {"update": 2})
    saved = versions(path, read_json)
    loaded = []
    restore(loaded.append, saved, 1, path)
    assert loaded == [{"update": 1}]
    with pytest.raises(RuntimeError, match=r"resume from update 5, but .* holds updates \[1, 2\]"):
        restore(loaded.append, saved, 5, path)
    restore(loaded.append, saved, 0, path)
    assert loaded == [{"update": 1}] and versions(path, read_json) == {}


def test_one_checkpoint_schedule_and_what_a_resumed_run_keeps() -> None:
    from protocol.run.config import RunConfig

    config = RunConfig(episodes=28, batch=4, checkpoint_every=3)  # 7 updates
    assert [u for u in range(1, 8) if config.checkpoint_due(u)] == [3, 6, 7]
    assert config.kept_episodes(0) is None and config.kept_episodes(3) == 12

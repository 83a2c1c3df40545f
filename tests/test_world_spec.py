"""The coordinator learns a world's spec without building the world (`world_spec`), and it is the spec the
built world has."""

from __future__ import annotations

import pytest

from envserver.worlds import REGISTRY, make_world, world_class, world_spec


@pytest.mark.parametrize("name, agents", [("predation", 8), ("navigation", 3), ("cleanup", 4), ("harvest", 4)])
def test_the_spec_described_is_the_spec_built(name: str, agents: int) -> None:
    assert world_spec(name, agents, 3) == make_world(name, agents, 3, seed=1).spec


def test_describing_builds_no_world(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in REGISTRY:
        monkeypatch.setattr(world_class(name), "__init__", lambda *a, **k: pytest.fail(f"{name} was built"))
    assert world_spec("cleanup", 4, 2).obs_shape == (15, 15, 3)
    assert world_spec("predation", 8, 2).dynamic_neighbors


def test_a_world_that_cannot_be_described_says_why() -> None:
    with pytest.raises(ValueError, match="predation needs at least 2 agents"):
        world_spec("predation", 1, 1)
    with pytest.raises(ValueError, match="unknown env 'nowhere'"):
        world_spec("nowhere", 2, 1)

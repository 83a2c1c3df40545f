"""World registry: `make_world(name, n_agents, batch, seed)`."""

from __future__ import annotations

import importlib

from envserver.worlds.base import StepResult, World, WorldSpec

# name -> "module:class"; imported lazily so a small world never pays for a big one's imports
REGISTRY: dict[str, str] = {
    "predation": "envserver.worlds.predation:PredationWorld",
    "navigation": "envserver.worlds.navigation:NavigationWorld",
    "cleanup": "envserver.worlds.cleanup:CleanupWorld",
    "harvest": "envserver.worlds.harvest:HarvestWorld",
}

# name -> one phrase for --help
SUMMARIES: dict[str, str] = {
    "predation": "Cooperative Predation: chase the prey together or free-ride (8 agents)",
    "navigation": "Cooperative Navigation: reach your target on a 5x5 grid, no collisions (3 agents)",
    "cleanup": "Cleanup: apples grow only while someone cleans the river (4 agents, images)",
    "harvest": "Harvest: apples regrow only near uneaten ones, a commons to keep (4 agents, images)",
}


def world_spec(name: str, n_agents: int, batch: int) -> WorldSpec:
    """The spec of the named world for n_agents agents, without building it (an external PettingZoo world is
    built once: only it knows its spaces). ValueError as make_world."""
    if ":" in name:
        return make_world(name, n_agents, batch, 0).spec
    return world_class(name).describe(n_agents, batch)


def world_class(name: str) -> type[World]:
    """The class of one of our worlds; ValueError naming the choices for an unknown name."""
    if name not in REGISTRY:
        raise ValueError(f"unknown env {name!r}; choose one of {sorted(REGISTRY)}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_world(name: str, n_agents: int, batch: int, seed: int) -> World:
    """Build B seeded parallel copies of the named world for n_agents agents.

    A name with ':' is an external PettingZoo ParallelEnv, "module:factory[?key=value&...]" (pz_world.py).
    """
    if ":" in name:
        from envserver.worlds.pz_world import PettingZooWorld  # needs pettingzoo only when used

        return PettingZooWorld(name, n_agents=n_agents, batch=batch, seed=seed)
    return world_class(name)(n_agents=n_agents, batch=batch, seed=seed)


__all__ = ["StepResult", "World", "WorldSpec", "make_world", "world_spec"]

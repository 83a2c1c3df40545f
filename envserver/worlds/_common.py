"""Helpers shared by the small worlds: action checking, the episode clock and serialisable RNG state."""

from __future__ import annotations

import numpy as np

from envserver.worlds.base import WorldSpec


def check_actions(actions: np.ndarray, spec: WorldSpec) -> np.ndarray:
    """Return joint actions as an int64 [N, B] array, or raise ValueError if shape or values are wrong."""
    a = np.asarray(actions)
    if a.shape != (spec.n_agents, spec.batch):
        raise ValueError(f"actions must have shape {(spec.n_agents, spec.batch)}, got {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"actions must be integers, got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() >= spec.n_actions):
        raise ValueError(f"actions must lie in [0, {spec.n_actions}), got {a.min()}..{a.max()}")
    return a.astype(np.int64, copy=False)


class EpisodeClock:
    """Counts steps of the fixed horizon T; refuses a step before reset or after truncation."""

    def __init__(self, horizon: int) -> None:
        self.horizon = horizon
        self.t = -1  # -1: no episode started yet

    def start(self) -> None:
        """Begin a new episode at t = 0."""
        self.t = 0

    def tick(self) -> bool:
        """Advance one step; returns done (True exactly when t reaches T)."""
        if self.t < 0:
            raise RuntimeError("call reset() before step()")
        if self.t >= self.horizon:
            raise RuntimeError(f"episode finished at t = {self.horizon}; call reset()")
        self.t += 1
        return self.t == self.horizon


class RngOnlyState:
    """get_state/set_state for worlds whose only state that outlives an episode is `self.rng`.

    Everything else (positions, targets, ...) is redrawn at every reset, and the runtime saves and
    restores only at episode boundaries.
    """

    spec: WorldSpec
    rng: np.random.Generator

    def get_state(self) -> dict:
        """The world's name and its RNG state, as plain msgpack/JSON data."""
        return {"world": self.spec.name, "rng": rng_state(self.rng)}

    def set_state(self, state: dict) -> None:
        """Restore the RNG saved by get_state (refuses another world's state)."""
        if state.get("world") != self.spec.name:
            raise ValueError(f"not a {self.spec.name} state: {state.get('world')!r}")
        restore_rng(self.rng, state["rng"])


def rng_state(rng: np.random.Generator) -> dict:
    """The generator's bit_generator state as plain msgpack/JSON data (128-bit ints become hex strings)."""
    return _plain(rng.bit_generator.state)


def restore_rng(rng: np.random.Generator, state: dict) -> None:
    """Inverse of `rng_state`: put the generator back exactly where it was."""
    rng.bit_generator.state = _unplain(state)


def _plain(value: object) -> object:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return {"hex": hex(int(value))}
    return value


def _unplain(value: object) -> object:
    if isinstance(value, dict):
        if set(value) == {"hex"}:
            return int(value["hex"], 16)
        return {k: _unplain(v) for k, v in value.items()}
    return value


# one colour per agent, shared by every world's pictures
AGENT_COLOURS = np.array(
    [
        (159, 67, 255),
        (2, 81, 154),
        (204, 0, 204),
        (216, 30, 54),
        (254, 151, 0),
        (250, 204, 255),
        (255, 255, 255),
        (128, 128, 0),
        (255, 128, 128),
    ],
    dtype=np.uint8,
)


PIXELS_PER_CELL = 16  # the pictures of the small worlds (predation, navigation)


def cells_to_pixels(img: np.ndarray, cell: int = PIXELS_PER_CELL) -> np.ndarray:
    """Blow a [H, W, 3] picture with one pixel per cell up to `cell` x `cell` pixels per cell."""
    return np.repeat(np.repeat(img, cell, axis=0), cell, axis=1)

"""Shared engine of the Sequential Social Dilemma grid worlds (Cleanup, Harvest), vectorised over B copies.

Rules follow `env-reference.md` (sections 1.2-1.8), image-based variant:
- ASCII maps: `@` wall, `P` spawn point, `A` apple cell (starts with an apple), `B` apple cell (starts
  empty), `H` river cell that starts polluted, `R` clean river cell, `S` stream, ` ` floor. Everything but
  `@` is walkable; outside the map counts as wall.
- Orientation 0..3 = UP, RIGHT, DOWN, LEFT; turning clockwise adds 1 (mod 4).
- Actions 0..6 = MOVE_LEFT, MOVE_RIGHT, MOVE_UP, MOVE_DOWN, STAY, TURN_CW, TURN_CCW. Moves are relative
  to the agent's orientation (UP = forward, LEFT = the agent's left, ...), so a move goes where it looks
  like it goes in the agent's own rotated view.
- Simultaneous moves: a move into a wall is refused; among agents that want the same cell the one with
  the best seeded random priority wins and the others stay; then movers advance into free cells until
  nothing changes, so chains (one agent following another) move and swaps or cycles are blocked. Two
  agents never share a cell.
- After moving, an agent on an apple eats it: reward +1 (section 1.5).
- Observations: the 15x15 RGB window centred on the agent, rotated so that the agent faces up (its
  forward cells are above the centre pixel, its right-hand cells to the right), black outside the map.

Game specifics (CLEAN beams, spawn and regrowth rules) live in subclasses through small hooks.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from envserver.worlds._common import AGENT_COLOURS, EpisodeClock, check_actions, restore_rng, rng_state
from envserver.worlds.base import StepResult, World, WorldSpec, complete_graph, full_masks

# actions (env-reference 1.3)
MOVE_LEFT, MOVE_RIGHT, MOVE_UP, MOVE_DOWN, STAY, TURN_CW, TURN_CCW = range(7)
N_BASE_ACTIONS = 7
# orientations and their unit steps (row, col)
UP, RIGHT, DOWN, LEFT = range(4)
DIRS = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)], dtype=np.int64)
# quarter turns clockwise from the heading to the direction of a relative move, by action (STAY: 0)
MOVE_TURN = np.array([3, 1, 0, 2, 0], dtype=np.int64)
ARROWS = "^>v<"

VIEW_RADIUS = 7
VIEW = 2 * VIEW_RADIUS + 1  # 15
HORIZON = 100

# colours (env-reference 1.8)
FLOOR = (0, 0, 0)
WALL = (180, 180, 180)
RIVER = (113, 75, 24)  # river and stream
WASTE = (99, 156, 194)
APPLE = (0, 255, 0)
CLEAN_BEAM = (100, 255, 255)


@dataclass(frozen=True)
class GridMap:
    """A parsed ASCII map: `chars[r, c]` is the legend character of cell (r, c)."""

    chars: np.ndarray  # [H, W] '<U1'

    @classmethod
    def parse(cls, rows: Sequence[str]) -> GridMap:
        """Parse equal-length strings, one per map row."""
        if not rows or any(len(r) != len(rows[0]) for r in rows) or not rows[0]:
            raise ValueError("a map is a non-empty list of equal-length rows")
        return cls(np.array([list(r) for r in rows]))

    @property
    def shape(self) -> tuple[int, int]:
        return self.chars.shape  # type: ignore[return-value]

    def cells(self, legend: str) -> np.ndarray:
        """[H, W] bool: cells whose character is one of `legend`."""
        return np.isin(self.chars, list(legend))

    def coords(self, legend: str) -> np.ndarray:
        """[K, 2] row-major (row, col) of the cells whose character is one of `legend`."""
        return np.argwhere(self.cells(legend)).astype(np.int64)


@dataclass(frozen=True)
class Layer:
    """A dynamic map layer for rendering: cells `mask` [B, H, W] drawn in `rgb` (and `char` in text)."""

    mask: np.ndarray
    rgb: tuple[int, int, int]
    char: str
    over_agents: bool = False  # drawn on top of agents in frames; left out of the text picture


def equality(returns: np.ndarray) -> np.ndarray:
    """Per-copy equality 1 - sum_ij |R_i - R_j| / (2 N sum_i R_i) of returns [B, N] (env-reference 1.9).

    Defined as 1 for a copy where sum_i R_i = 0 (nobody earned anything: nothing unequal to report).
    """
    r = returns.astype(np.float64)
    n = r.shape[1]
    total = r.sum(axis=1)
    gaps = np.abs(r[:, :, None] - r[:, None, :]).sum(axis=(1, 2))
    safe = np.where(total == 0, 1.0, total)
    return np.where(total == 0, 1.0, 1.0 - gaps / (2 * n * safe))


def resolve_moves(pos: np.ndarray, target: np.ndarray, rank: np.ndarray, width: int) -> np.ndarray:
    """New positions [B, N, 2] after simultaneous moves from `pos` toward wall-free `target` cells.

    rank [B, N]: 0 = highest priority. Contested cells go to the best-ranked claimant (others stay);
    then movers step into cells that are free, repeatedly, so chains advance and swaps/cycles stay put.
    """
    here = pos[..., 0] * width + pos[..., 1]  # [B, N] linear cell ids
    goal = target[..., 0] * width + target[..., 1]
    want = goal != here
    # j beats i for the same cell: both want it and j has the better rank
    beaten = (goal[:, :, None] == goal[:, None, :]) & want[:, None, :] & (rank[:, None, :] < rank[:, :, None])
    want &= ~beaten.any(axis=2)
    while True:
        taken = (goal[:, :, None] == here[:, None, :]).any(axis=2)  # someone stands on i's goal now
        go = want & ~taken
        if not go.any():
            break
        here = np.where(go, goal, here)
        want &= ~go
    return np.stack((here // width, here % width), axis=-1)


def _view_offsets() -> np.ndarray:
    """[4, 2, VIEW, VIEW]: map offset (drow, dcol) shown at view pixel (u, v) for each orientation.

    Pixel (u, v) lies (R - u) cells ahead and (v - R) cells to the right of the agent (R = VIEW_RADIUS).
    """
    u, v = np.meshgrid(np.arange(VIEW), np.arange(VIEW), indexing="ij")
    out = np.empty((4, 2, VIEW, VIEW), dtype=np.int64)
    for o in range(4):
        fwd, right = DIRS[o], DIRS[(o + 1) % 4]
        for axis in range(2):
            out[o, axis] = (VIEW_RADIUS - u) * fwd[axis] + (v - VIEW_RADIUS) * right[axis]
    return out


VIEW_OFFSETS = _view_offsets()


class GridWorld(World):
    """B copies of an N-agent grid game in lockstep. Public state arrays (tests may edit them):

    pos [B, N, 2] int64 (row, col), ori [B, N] int64, apples [B, H, W] bool, eaten [B, N] int64
    (apples eaten this episode); clock.t counts the steps of the episode.
    """

    NAME: str
    N_ACTIONS: int
    MAP: Sequence[str]  # the game's own map

    @classmethod
    def describe(cls, n_agents: int, batch: int, rows: Sequence[str] | None = None,
                 horizon: int = HORIZON) -> WorldSpec:
        """The spec of this game on `rows` (default: its own map), without building it."""
        spawns = GridMap.parse(rows or cls.MAP).coords("P")
        most = min(len(spawns), len(AGENT_COLOURS))  # distinct spawn points, distinct colours
        if not 1 <= n_agents <= most:
            raise ValueError(f"{cls.NAME}: n_agents must be in 1..{most}")
        if batch < 1 or horizon < 1:
            raise ValueError("batch and horizon must be >= 1")
        return WorldSpec(
            name=cls.NAME,
            n_agents=n_agents,
            batch=batch,
            obs_shape=(VIEW, VIEW, 3),
            obs_dtype="uint8",
            n_actions=cls.N_ACTIONS,
            horizon=horizon,
            default_action=STAY,
            candidates=complete_graph(n_agents),
            dynamic_neighbors=False,
        )

    def __init__(self, rows: Sequence[str], n_agents: int, batch: int, seed: int, horizon: int = HORIZON):
        self.spec = self.describe(n_agents, batch, rows, horizon)
        self.grid = GridMap.parse(rows)
        self.walls = self.grid.cells("@")
        self.spawns = self.grid.coords("P")
        self.n, self.b = n_agents, batch
        self.rng = np.random.default_rng(seed)
        h, w = self.grid.shape
        self.base_rgb = np.zeros((h, w, 3), dtype=np.uint8)
        self.base_rgb[self.grid.cells("HRS")] = RIVER
        self.base_rgb[self.walls] = WALL
        self.base_chars = np.full((h, w), " ")
        for legend, char in (("AB", "."), ("HR", "R"), ("S", "S"), ("@", "@")):
            self.base_chars[self.grid.cells(legend)] = char
        self._bi = np.arange(batch)[:, None]  # batch index broadcasting against [B, N]
        self.clock = EpisodeClock(horizon)
        self.pos = np.zeros((batch, n_agents, 2), dtype=np.int64)
        self.ori = np.zeros((batch, n_agents), dtype=np.int64)
        self.apples = np.zeros((batch, h, w), dtype=bool)
        self.eaten = np.zeros((batch, n_agents), dtype=np.int64)

    # ---- hooks for the games ----------------------------------------------------------------------
    @abstractmethod
    def _reset_layers(self) -> None:
        """Reset the game's dynamic layers (apples and anything else) for a new episode."""

    def _special_actions(self, actions: np.ndarray, order: np.ndarray) -> None:
        """Apply the game's extra actions (after moves and eating); actions [B, N], order [B, N] agent ids
        from highest to lowest priority. The base game has none."""

    @abstractmethod
    def _grow(self) -> None:
        """Spawn/regrow the game's dynamic cells at the end of a step."""

    @abstractmethod
    def _layers(self) -> list[Layer]:
        """Dynamic layers to draw, bottom first."""

    def _extra_state(self) -> dict:
        """The game's own plain-data state, merged into get_state()."""
        return {}

    def _load_extra_state(self, state: dict) -> None:
        """Inverse of `_extra_state`."""

    # ---- World API ----------------------------------------------------------------------------------
    def reset(self) -> StepResult:
        """Distinct random spawn points and uniformly random orientations in every copy."""
        pick = np.argsort(self.rng.random((self.b, len(self.spawns))), axis=1)[:, : self.n]
        self.pos = self.spawns[pick]
        self.ori = self.rng.integers(0, 4, size=(self.b, self.n))
        self.clock.start()
        self.eaten[:] = 0
        self._reset_layers()
        return StepResult.at_clock(self.spec, self.observe(), np.zeros((self.n, self.b), np.float32), False,
                                   full_masks(self.spec))

    def step(self, actions: np.ndarray) -> StepResult:
        """Turns and moves, eating, the game's extra actions, spawning; order of env-reference 1.5."""
        act = check_actions(actions, self.spec).T  # [B, N]
        done = self.clock.tick()
        rank = np.argsort(self.rng.random((self.b, self.n)), axis=1)  # a uniform random ranking per copy
        self._move(act, rank)
        rewards = self._eat()
        self._special_actions(act, np.argsort(rank, axis=1))
        self._grow()
        self.eaten += rewards
        return StepResult.at_clock(self.spec, self.observe(), rewards.T.astype(np.float32), done,
                                   full_masks(self.spec))

    def render_text(self, b: int = 0) -> str:
        """ASCII picture of copy b: legend chars, `.` empty apple cell, agents as ids, then headings."""
        pic = self.base_chars.copy()
        for layer in self._layers():
            if not layer.over_agents:
                pic[layer.mask[b]] = layer.char
        for i, (r, c) in enumerate(self.pos[b]):
            pic[r, c] = str(i)
        heading = " ".join(f"{i}{ARROWS[o]}" for i, o in enumerate(self.ori[b]))
        return "\n".join("".join(row) for row in pic) + f"\nt={self.clock.t} {heading}"

    def render_rgb(self, b: int = 0, scale: int = 8) -> np.ndarray:
        """Full-map RGB frame [H * scale, W * scale, 3] uint8 of copy b (for GIFs)."""
        frame = self._frames()[b]
        return np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)

    def observe(self) -> np.ndarray:
        """Egocentric rotated views [N, B, 15, 15, 3] uint8 of every agent in every copy."""
        h, w = self.grid.shape
        padded = np.zeros((self.b, h + 2 * VIEW_RADIUS, w + 2 * VIEW_RADIUS, 3), dtype=np.uint8)
        padded[:, VIEW_RADIUS : VIEW_RADIUS + h, VIEW_RADIUS : VIEW_RADIUS + w] = self._frames()
        off = VIEW_OFFSETS[self.ori]  # [B, N, 2, 15, 15]
        rows = self.pos[..., 0, None, None] + VIEW_RADIUS + off[:, :, 0]
        cols = self.pos[..., 1, None, None] + VIEW_RADIUS + off[:, :, 1]
        views = padded[self._bi[:, :, None, None], rows, cols]  # [B, N, 15, 15, 3]
        return np.ascontiguousarray(views.transpose(1, 0, 2, 3, 4))

    def get_state(self) -> dict:
        """Plain JSON/msgpack-friendly data (dicts, lists, ints, floats, bools, strings)."""
        return {
            "world": self.NAME,
            "t": self.clock.t,
            "rng": rng_state(self.rng),
            "pos": self.pos.tolist(),
            "ori": self.ori.tolist(),
            "apples": self.apples.tolist(),
            "eaten": self.eaten.tolist(),
            **self._extra_state(),
        }

    def set_state(self, state: dict) -> None:
        """Inverse of get_state (the world must have the same map, N and B)."""
        if state.get("world") != self.NAME:
            raise ValueError(f"not a {self.NAME} state: {state.get('world')!r}")
        self.clock.t = int(state["t"])
        restore_rng(self.rng, state["rng"])
        self.pos = self._load(state["pos"], self.pos)
        self.ori = self._load(state["ori"], self.ori)
        self.apples = self._load(state["apples"], self.apples)
        self.eaten = self._load(state["eaten"], self.eaten)
        self._load_extra_state(state)

    # ---- engine -------------------------------------------------------------------------------------
    @staticmethod
    def _load(data: list, like: np.ndarray) -> np.ndarray:
        arr = np.array(data, dtype=like.dtype)
        if arr.shape != like.shape:
            raise ValueError(f"state array has shape {arr.shape}, expected {like.shape}")
        return arr

    def blocked(self, cells: np.ndarray) -> np.ndarray:
        """[...] bool: cells [..., 2] that are walls or outside the map."""
        h, w = self.grid.shape
        r, c = cells[..., 0], cells[..., 1]
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        return ~inside | self.walls[np.clip(r, 0, h - 1), np.clip(c, 0, w - 1)]

    def occupancy(self) -> np.ndarray:
        """[B, H, W] bool: cells with an agent on them."""
        occ = np.zeros((self.b, *self.grid.shape), dtype=bool)
        occ[self._bi, self.pos[..., 0], self.pos[..., 1]] = True
        return occ

    def _move(self, act: np.ndarray, rank: np.ndarray) -> None:
        """Turn the turners, move the movers (relative to their heading), resolving conflicts by rank."""
        turns = np.where(act == TURN_CW, 1, 0) + np.where(act == TURN_CCW, -1, 0)
        moving = act < STAY  # MOVE_LEFT..MOVE_DOWN are 0..3
        heading = (self.ori + MOVE_TURN[np.minimum(act, STAY)]) % 4
        target = self.pos + DIRS[heading] * moving[..., None]
        target = np.where(self.blocked(target)[..., None], self.pos, target)
        self.pos = resolve_moves(self.pos, target, rank, self.grid.shape[1])
        self.ori = (self.ori + turns) % 4

    def _eat(self) -> np.ndarray:
        """Agents standing on apples eat them; returns [B, N] int64 apples eaten this step."""
        r, c = self.pos[..., 0], self.pos[..., 1]
        ate = self.apples[self._bi, r, c]
        self.apples[self._bi, r, c] = False
        return ate.astype(np.int64)

    def _frames(self) -> np.ndarray:
        """Full-map RGB pictures [B, H, W, 3] uint8 of every copy."""
        img = np.broadcast_to(self.base_rgb, (self.b, *self.base_rgb.shape)).copy()
        layers = self._layers()
        for layer in layers:
            if not layer.over_agents:
                img[layer.mask] = layer.rgb
        img[self._bi, self.pos[..., 0], self.pos[..., 1]] = AGENT_COLOURS[: self.n]
        for layer in layers:
            if layer.over_agents:
                img[layer.mask] = layer.rgb
        return img

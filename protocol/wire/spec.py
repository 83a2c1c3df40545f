"""WorldSpec: the public facts about a world that every process needs (sent to agents in DIRECTORY)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

TIME_LIMITS = ("end", "truncate")


@dataclass(frozen=True)
class WorldSpec:
    """Public facts about a world that agents and the runtime need before the first step."""

    name: str
    n_agents: int
    batch: int
    obs_shape: tuple[int, ...]
    obs_dtype: str  # "float32" or "uint8" (image worlds; agents scale by 1/255)
    n_actions: int
    horizon: int
    default_action: int  # executed for an agent whose action did not arrive in time
    # candidates[i]: sorted ids of the agents i may exchange with (its candidate neighbours)
    candidates: tuple[tuple[int, ...], ...]
    dynamic_neighbors: bool  # True if the per-step masks can switch candidates off
    # what the horizon T is: "end" = the end of the task (no bootstrap at T: the critic target is the
    # return to the episode's end, eq. 18), "truncate" = a cut of a longer task (bootstrap with V(o_T))
    time_limit: str = "end"

    def __post_init__(self) -> None:
        if self.time_limit not in TIME_LIMITS:
            raise ValueError(f"time_limit must be one of {', '.join(TIME_LIMITS)}, got {self.time_limit!r}")

    def to_dict(self) -> dict[str, Any]:
        """msgpack/TOML-friendly form (tuples as lists)."""
        out = asdict(self)
        out["obs_shape"] = list(self.obs_shape)
        out["candidates"] = [list(c) for c in self.candidates]
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "WorldSpec":
        """Inverse of to_dict."""
        values = dict(values)
        values["obs_shape"] = tuple(int(x) for x in values["obs_shape"])
        values["candidates"] = tuple(tuple(int(j) for j in c) for c in values["candidates"])
        return cls(**values)

"""What the world tells agent i after a reset or a step: its OBS body, the same in `ss-envserver` and `ss-sim`."""

from __future__ import annotations

import numpy as np

from envserver.worlds import StepResult


def observation(result: StepResult, i: int, episode: int, step: int, mask: np.ndarray,
                default_used: bool) -> dict[str, object]:
    """Agent i's own observation, episode ends and neighbour `mask` (and, after step 0, its own reward), nothing
    of anyone else's; `default_used`: the world played the default action for it (it missed the deadline)."""
    body: dict[str, object] = {
        "episode": episode,
        "to": i,
        "obs": np.ascontiguousarray(result.obs[i]),
        "terminated": np.ascontiguousarray(result.terminated[i]),
        "truncated": np.ascontiguousarray(result.truncated[i]),
        "mask": mask,
        "default_used": default_used,
    }
    if step > 0:
        body["reward"] = np.ascontiguousarray(result.rewards[i])
    return body

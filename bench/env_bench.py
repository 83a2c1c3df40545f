"""Grid-world throughput: steps per second of cleanup and harvest (4 agents, batch 1 and 16), measured in
one run, and the share of a step spent rendering the egocentric observations.

    python bench/env_bench.py [--steps 2000]

A "batch step" advances all B copies once; "copy steps/s" = B x batch steps/s. The observation ratio is
time(observe) / (time(step) - time(observe)), observe() being timed once right after every step.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from envserver.worlds import make_world

N_AGENTS = 4


def bench(name: str, batch: int, steps: int) -> tuple[float, float]:
    """(batch steps per second, observation-to-rest time ratio) of `steps` random-action steps."""
    world = make_world(name, N_AGENTS, batch, seed=0)
    actions = np.random.default_rng(0).integers(0, world.spec.n_actions, size=(steps, N_AGENTS, batch))
    world.reset()
    stepping = observing = 0.0
    for a in actions:
        start = time.perf_counter()
        done = world.step(a).done
        stepped = time.perf_counter()
        world.observe()  # timed right after the step it belongs to, under the same machine load
        observing += time.perf_counter() - stepped
        stepping += stepped - start
        if done:
            world.reset()
    return steps / stepping, observing / (stepping - observing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="timed steps per configuration")
    args = parser.parse_args()
    print(f"{'env':8} {'batch':>5} {'batch steps/s':>14} {'copy steps/s':>13} {'obs/rest':>9}")
    for name in ("cleanup", "harvest"):
        for batch in (1, 16):
            rate, ratio = bench(name, batch, args.steps)
            print(f"{name:8} {batch:5d} {rate:14.0f} {rate * batch:13.0f} {ratio:9.2f}")


if __name__ == "__main__":
    main()

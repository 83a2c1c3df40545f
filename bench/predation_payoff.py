"""What "good" means in N-agent Cooperative Predation: the paper's payoff, computed exactly.

    python bench/predation_payoff.py [N ...]        (default: 2 8)

Per step, with cooperation flags c_i: all cooperate -> -1 each; all defect -> -2N + 1 each; mixed ->
cooperators -2N, defectors 0 (envserver/worlds/predation.py). The normalized return of a run is the
collective return per agent and step, so for a stationary joint policy it is (1/N) E[sum_i r_i]. This
script evaluates that exactly by enumerating the 2^N joint actions when each agent i cooperates with
probability p_i, independently:

- the deterministic profiles (k of N cooperate) and uniform random agents;
- the collective gradient d/dp_i (1/N) E[sum_j r_j] at a common p (exact: the expectation is linear in
  each p_i), and the range of p where it points toward defection (above it: the all-cooperate basin);
- the selfish gradient d/dp_i E[r_i], which points toward defection for every p < 1 (the dilemma).
"""

from __future__ import annotations

import itertools
import sys

import numpy as np


def rewards(coop: np.ndarray) -> np.ndarray:
    """Per-agent rewards [N] of one step for cooperation flags [N] (the world's payoff)."""
    n = len(coop)
    if coop.all():
        return np.full(n, -1.0)
    if not coop.any():
        return np.full(n, -2.0 * n + 1.0)
    return np.where(coop, -2.0 * n, 0.0)


def joint_table(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every joint action [2^N, N] bool and its rewards [2^N, N]."""
    actions = np.array(list(itertools.product([False, True], repeat=n)))
    return actions, np.array([rewards(a) for a in actions])


def expected(p: np.ndarray, actions: np.ndarray, table: np.ndarray) -> np.ndarray:
    """E[r_i] [N] when agent i cooperates with probability p_i."""
    weights = np.prod(np.where(actions, p, 1.0 - p), axis=1)
    return weights @ table


def gradient(p: np.ndarray, i: int, actions: np.ndarray, table: np.ndarray) -> np.ndarray:
    """d E[r_j] / d p_i [N], exact: E is linear in p_i, so it is E(p_i = 1) - E(p_i = 0)."""
    hi, lo = p.copy(), p.copy()
    hi[i], lo[i] = 1.0, 0.0
    return expected(hi, actions, table) - expected(lo, actions, table)


def defection_interval(n: int, actions: np.ndarray, table: np.ndarray) -> tuple[float, float] | None:
    """The common p in which the collective gradient points toward defection, (lo, hi), or None; outside
    it, it points toward cooperation. Its ends are found by bisection from a fine grid."""
    collective = lambda q: gradient(np.full(n, q), 0, actions, table).sum() / n  # noqa: E731
    grid = np.linspace(0.0, 1.0, 1001)
    negative = [q for q in grid if collective(q) < 0]
    if not negative:
        return None

    def root(a: float, b: float) -> float:  # collective changes sign between a and b
        sign_a = collective(a) < 0
        for _ in range(60):
            mid = (a + b) / 2
            a, b = (mid, b) if (collective(mid) < 0) == sign_a else (a, mid)
        return (a + b) / 2

    step = grid[1] - grid[0]
    return root(max(0.0, negative[0] - step), negative[0]), root(negative[-1], min(1.0, negative[-1] + step))


def report(n: int) -> str:
    actions, table = joint_table(n)
    lines = [f"N = {n}: normalized return (collective return per agent and step)"]
    for k in range(n + 1):
        coop = np.arange(n) < k
        what = {0: "all defect", n: "all cooperate"}.get(k, f"{k} cooperate, {n - k} free-ride")
        lines.append(f"  {what:<28} {rewards(coop).mean():8.3f}")
    for q in (0.5, 0.75, 0.9):
        p = np.full(n, q)
        collective = gradient(p, 0, actions, table).sum() / n
        selfish = gradient(p, 0, actions, table)[0]
        lines.append(f"  every agent cooperates w.p. {q:<4} {expected(p, actions, table).mean():8.3f}   "
                     f"d/dp_i: collective {collective:+8.3f}, selfish {selfish:+8.3f}")
    interval = defection_interval(n, actions, table)
    if interval is None:
        lines.append("  the collective gradient points toward cooperation at every common p")
    else:
        lines.append(f"  the collective gradient points toward defection while every agent cooperates w.p. in "
                     f"({interval[0]:.3f}, {interval[1]:.3f}),\n  toward cooperation above {interval[1]:.3f} "
                     f"(the all-cooperate basin) and below {interval[0]:.3f} (toward one cooperator)")
    return "\n".join(lines)


if __name__ == "__main__":
    print("\n\n".join(report(int(a)) for a in (sys.argv[1:] or ["2", "8"])))

"""What Fig. 5 plots about suggestions: how close they came to what the neighbour did (train.csv's
suggestion_mse), and, replayed from the audit logs, how often a predation suggestion says "approach"."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from envserver.worlds import make_world
from protocol.audit.log import Record, iter_records
from protocol.run.csvlog import read_rows
from protocol.run.rundir import RunDir
from protocol.wire.codec import decode

if TYPE_CHECKING:
    from coordinator.research.plots import Run


def suggestion_mse(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    """(episodes, mean over agents of train.csv suggestion_mse), or None without it."""
    logs = sorted((run.path / "agents").glob("*/train.csv"))
    tables = [read_rows(p) for p in logs]
    if not tables or any(not t or "suggestion_mse" not in t[0] for t in tables):
        return None
    n = min(len(t) for t in tables)
    mse = np.array([[float(r["suggestion_mse"]) for r in t[:n]] for t in tables])
    if np.isnan(mse).all():
        return None
    return np.array([float(r["episode"]) for r in tables[0][:n]]), np.nanmean(mse, axis=0)


def approach_share(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    """(episodes, share of suggestions favouring the move toward the prey) of a predation cluster run.

    Needs the agents' frames-mode audit logs of a fault-free run: their STEP actions replayed through the
    run's world give s^t = [x_1 - x_tar, ..] / 30 (every agent observes the same; the env server's log keeps
    only digests of the OBS it sent), and their round-0 SUGG give pi_ij(.|o_i) for rows r = t*B + b.
    Approach for agent j is action 1 (+1) if x_j <= x_tar else action 0; the share counts rows with
    p(approach) > 0.5.
    """
    rd, cfg = RunDir(run.path), run.config
    if run.env != "predation" or not rd.audit(0).exists():
        return None
    obs = replayed_states(rd, cfg)
    return None if obs is None else approach_share_given(obs, rd, cfg)


def approach_share_given(obs: dict[tuple[int, int], np.ndarray], rd: RunDir,
                         cfg: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """`approach_share` with the states s^t [B, N] by (update, t) given."""
    hits: dict[int, list[float]] = defaultdict(list)
    k_per_update = int(cfg["iterations"])
    for i in range(int(cfg["agents"])):
        for record in _frames(rd.audit(i), "SUGG") if rd.audit(i).exists() else ():
            update, k = divmod(record.round, k_per_update)
            if k != 0:
                continue
            body = decode(record.frames[-1]).body
            s = np.stack([obs[(update, t)] for t in range(len(body["probs"]) // int(cfg["batch"]))])
            approach = (s[:, :, body["to"]].reshape(-1) <= 0).astype(int)  # rows t*B + b
            hits[update].append(float((body["probs"][np.arange(len(approach)), approach] > 0.5).mean()))
    if not hits:
        return None
    updates = sorted(hits)
    return (np.array([(u + 1) * int(cfg["batch"]) for u in updates], dtype=float),
            np.array([np.mean(hits[u]) for u in updates]))


def replayed_states(rd: RunDir, cfg: dict) -> dict[tuple[int, int], np.ndarray] | None:
    """(update, t) -> the state every agent observed at step t [B, N], for t < T, by replaying the run's world
    (its seed, from update 0) with the joint actions the agents' STEP records hold; None if any is missing."""
    n, batch = int(cfg["agents"]), int(cfg["batch"])
    actions: dict[tuple[int, int], dict[int, np.ndarray]] = defaultdict(dict)
    for i in range(n):
        for record in _frames(rd.audit(i), "STEP") if rd.audit(i).exists() else ():
            body = decode(record.frames[-1]).body
            actions[(body["episode"], record.step)][i] = body["actions"]
    updates = sorted({u for u, _ in actions})
    if not updates or updates != list(range(len(updates))):
        return None
    world = make_world("predation", n, batch, int(cfg["seed"]))
    obs: dict[tuple[int, int], np.ndarray] = {}
    for update in updates:
        result = world.reset()
        for t in range(world.spec.horizon):
            obs[(update, t)] = result.obs[0]
            joint = actions.get((update, t + 1), {})
            if len(joint) != n:
                return None
            result = world.step(np.stack([joint[i] for i in range(n)]))
    return obs


def _frames(path: Path, kind: str) -> list[Record]:
    """The records of one kind that carry their frames (hashes-only logs give none)."""
    return [r for r in iter_records(path) if isinstance(r, Record) and r.kind == kind and r.frames is not None]

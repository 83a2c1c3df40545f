"""An agent's private files: train.csv rows and the atomic checkpoint used to resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from protocol.run.checkpoints import save_keeping_previous, versions
from protocol.run.csvlog import CsvLog
from protocol.run.rundir import RunDir

TRAIN_COLUMNS = (
    "update", "episode", "policy_loss", "value_loss", "penalty", "kappa", "entropy",
    "suggestion_mse", "mean_reward", "comm_gaps", "active_neighbors",
)

CENTRAL_COLUMNS = ("update", "episode", "value_loss")


def open_train_log(run_dir: RunDir, agent_id: int, keep_until_episode: int | None, tensorboard: bool = False) -> CsvLog:
    """Agent i's private training log, agents/<id>/train.csv (with `tensorboard`, also its own event files)."""
    return CsvLog(run_dir.train(agent_id), TRAIN_COLUMNS, keep_until_episode,
                  run_dir.agent_tensorboard(agent_id) if tensorboard else None)


def missed_row(update: int, episode: int) -> dict[str, object]:
    """The train.csv row of an update this agent missed (it was paused, cut off or restarted): no statistic."""
    return {"update": update, "episode": episode, **{c: float("nan") for c in TRAIN_COLUMNS[2:]}}


def open_central_log(run_dir: RunDir, keep_until_episode: int | None = None) -> CsvLog:
    """CL's central learner's training log, DIR/logs/learner.train.csv (its critic's loss per update)."""
    return CsvLog(run_dir.logs / "learner.train.csv", CENTRAL_COLUMNS, keep_until_episode)


def save_checkpoint(path: Path, update: int, episode: int, learner_state: dict[str, Any]) -> None:
    """Write atomically, keeping the previous version (protocol/run/checkpoints.py): never a torn file."""
    save_keeping_previous(path, lambda tmp: torch.save({"update": update, "episode": episode,
                                                        "learner": learner_state}, tmp))


def load_checkpoints(path: Path) -> dict[int, dict[str, Any]]:
    """The saved versions (current and previous) by update; {} if there are none."""
    # onto the CPU whatever device wrote it; load_state_dict then moves each tensor to its net's device
    return versions(path, lambda p: torch.load(p, weights_only=False, map_location="cpu"))

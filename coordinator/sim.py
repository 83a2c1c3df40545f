"""`ss-sim`: N learners and the world in one process, exchanging through memory.

This is the reference the multi-process runtime must match bit for bit: it drives exactly the learner
code the agent processes run, with the same seeds, in the same order of operations per agent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from agent.exchange import route_in_memory
from agent.baselines import make_learner
from agent.baselines.cl import CLLearner
from agent.central_critic import CentralCritic
from agent.records import load_checkpoints, open_central_log, open_train_log, save_checkpoint
from coordinator.progress import RunProgress
from protocol.topology import project_mask, resolve_neighbors
from envserver.metrics import BatchReturns, metric_columns
from envserver.worlds import World, make_world
from protocol.checkpoints import discard, read_json, resume_point, save_json, versions
from protocol.config import RunConfig, write_toml
from protocol.csvlog import CsvLog
from protocol.rundir import RunDir


class Simulation:
    """One in-process run: the world, one Learner per agent (and CL's central critic), and the run directory."""

    def __init__(self, config: RunConfig, out: Path, tensorboard: bool = False):
        self.config = config
        self.run_dir = RunDir(out)
        self.tensorboard = tensorboard  # also write metrics and every agent's train log as TensorBoard events
        self.world: World = make_world(config.env, config.agents, config.batch, config.seed)
        self.spec = self.world.spec
        self.neighbors = resolve_neighbors(config, self.spec)
        self.learners = [make_learner(i, self.spec, self.neighbors[i], config) for i in range(config.agents)]
        # CL: the central learner's critic, driven exactly as agent/central.py drives it
        self.central = CentralCritic(self.spec, config) if config.algo == "cl" else None
        self.start_update = 0

    def resume(self) -> int:
        """Load the newest checkpoint that every learner and the world hold (protocol/checkpoints.py), if
        any; returns the update to continue from. RuntimeError if they hold none in common."""
        saved = {f"agent {i}": load_checkpoints(self.run_dir.checkpoint(i)) for i in range(self.config.agents)}
        if self.central is not None:  # CL: the central critic's checkpoint must agree as well
            saved["central learner"] = load_checkpoints(self.run_dir.central_checkpoint)
        saved["world"] = versions(self.run_dir.world_checkpoint, read_json)
        try:
            update = resume_point({name: set(states) for name, states in saved.items()})
        except ValueError as err:
            raise RuntimeError(f"{self.run_dir.root}: {err}") from err
        if update == 0:
            return 0
        for i, learner in enumerate(self.learners):
            learner.load_state_dict(saved[f"agent {i}"][update]["learner"])
        if self.central is not None:
            self.central.load_state_dict(saved["central learner"][update]["learner"])
        self.world.set_state(saved["world"][update]["world"])
        self.start_update = update
        return update

    def run(self, progress: bool = True) -> None:
        """Train for config.updates episode batches, writing metrics, train logs and checkpoints."""
        torch.set_num_threads(1)
        config, rd = self.config, self.run_dir
        rd.make(config.agents)
        write_toml(config, rd.config)
        if not self.start_update:  # a fresh run: never resume into an older run's checkpoints later
            for path in (*map(rd.checkpoint, range(config.agents)), rd.central_checkpoint, rd.world_checkpoint):
                discard(path)
        keep = config.kept_episodes(self.start_update)
        metrics = CsvLog(rd.metrics, metric_columns(self.world), keep, rd.tensorboard if self.tensorboard else None)
        train_logs = [open_train_log(rd, i, keep, self.tensorboard) for i in range(config.agents)]
        if self.central is not None:
            train_logs.append(open_central_log(rd, keep))
        bar = RunProgress(config, self.start_update, enabled=progress)
        try:
            for update in range(self.start_update, config.updates):
                episode = (update + 1) * config.batch
                row = self.rollout(episode)
                metrics.append(row)
                for i, stats in enumerate(self.train()):  # CL: the central critic's stats last
                    train_logs[i].append({"update": update + 1, "episode": episode, **stats})
                if config.checkpoint_due(update + 1):
                    self.checkpoint(update + 1, episode)
                bar.advance(row)
        finally:
            bar.close()
            metrics.close()
            for log in train_logs:
                log.close()

    def rollout(self, episodes_so_far: int) -> dict[str, object]:
        """Play one episode batch in every parallel world; returns its metrics.csv row."""
        returns = BatchReturns(self.world)
        result = self.world.reset()
        for _ in range(self.spec.horizon):
            actions = np.stack([
                learner.act(result.obs[i], self.mask(i, result.masks[i]))
                for i, learner in enumerate(self.learners)
            ])
            result = self.world.step(actions)
            returns.add(result.rewards)
            for i, learner in enumerate(self.learners):
                learner.record(result.rewards[i], result.terminated[i], result.truncated[i], result.obs[i])
        return returns.row(episodes_so_far)

    def mask(self, agent_id: int, world_mask: np.ndarray) -> np.ndarray:
        """The world's neighbour mask restricted to this agent's neighbours."""
        return project_mask(self.spec.candidates[agent_id], world_mask, self.neighbors[agent_id])

    def train(self) -> list[dict[str, float]]:
        """K exchange rounds, each followed by one gradient pass of every learner (Algorithm 1). CL: first the
        central critic's team advantage to every agent, and its K critic steps at the end."""
        if self.central is not None:
            advantages = self.central.advantages([learner.report() for learner in self.cl_learners()])
            for learner in self.cl_learners():
                learner.receive_advantages({"advantages": advantages})
        for learner in self.learners:
            learner.begin_update()
        for k in range(self.config.iterations):
            outgoing = {i: learner.outgoing(k) for i, learner in enumerate(self.learners)}
            inboxes = route_in_memory(outgoing, self.neighbors)
            for i, learner in enumerate(self.learners):
                learner.update_step(k, inboxes[i])
        stats = [learner.end_update() for learner in self.learners]
        return stats if self.central is None else [*stats, self.central.fit()]

    def cl_learners(self) -> list[CLLearner]:
        """The learners as CL agents (algo cl only)."""
        return [learner for learner in self.learners if isinstance(learner, CLLearner)]

    def checkpoint(self, update: int, episode: int) -> None:
        """Every learner's checkpoint (CL: and the central critic's), then the world's (the resume point is
        consistent only when all agree)."""
        for i, learner in enumerate(self.learners):
            save_checkpoint(self.run_dir.checkpoint(i), update, episode, learner.state_dict())
        if self.central is not None:
            save_checkpoint(self.run_dir.central_checkpoint, update, episode, self.central.state_dict())
        save_json(self.run_dir.world_checkpoint, {"update": update, "world": self.world.get_state()})

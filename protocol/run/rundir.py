"""The layout of a run directory - one definition for every process that reads or writes it."""

from __future__ import annotations

from pathlib import Path


class RunDir:
    """`DIR/config.toml`, `DIR/metrics.csv`, `DIR/agents/<id>/{train.csv,checkpoint.pt,audit.log}`, `DIR/logs/`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def processes(self) -> Path:
        return self.root / "processes.json"

    @property
    def world_checkpoint(self) -> Path:
        return self.root / "world_checkpoint.json"

    @property
    def central_checkpoint(self) -> Path:
        """CL's central learner's critic and Adam state (its files live beside its logs)."""
        return self.logs / "learner.checkpoint.pt"

    def agent(self, agent_id: int) -> Path:
        return self.root / "agents" / str(agent_id)

    def train(self, agent_id: int) -> Path:
        return self.agent(agent_id) / "train.csv"

    def checkpoint(self, agent_id: int) -> Path:
        return self.agent(agent_id) / "checkpoint.pt"

    def audit(self, agent_id: int) -> Path:
        return self.agent(agent_id) / "audit.log"

    def process_audit(self, role: str) -> Path:
        return self.logs / f"{role}.audit.log"

    def receipts(self, agent_id: int) -> Path:
        """What agent i received: one line per message (sender, kind, seq, digest), for `ss-audit --cross-check`."""
        return self.agent(agent_id) / "received.log"

    def process_receipts(self, role: str) -> Path:
        return self.logs / f"{role}.received.log"

    @property
    def tensorboard(self) -> Path:
        """The world's public metrics as TensorBoard events (`--tensorboard`); `tensorboard --logdir DIR`
        finds them and every agent's own."""
        return self.root / "tensorboard"

    def agent_tensorboard(self, agent_id: int) -> Path:
        """Agent i's private scalars as TensorBoard events, written by agent i only."""
        return self.agent(agent_id) / "tensorboard"

    def make(self, n_agents: int) -> None:
        """Create the directory tree."""
        self.logs.mkdir(parents=True, exist_ok=True)
        for i in range(n_agents):
            self.agent(i).mkdir(parents=True, exist_ok=True)

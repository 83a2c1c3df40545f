"""Agent i's trained policy pi_ii on its own, to act with after training: evaluation, rendering, export.

No critic, no suggestion nets, no optimiser: only the net the agent acts with, read from its checkpoint
(`own_policy_state` knows where each algorithm keeps it). `export_torchscript` writes it as a standalone
TorchScript file that loads and acts with nothing but torch; it holds this agent's policy and nothing else.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agent.nets import PolicyNet, obs_tensor, sample
from protocol.run.config import RunConfig
from protocol.wire.spec import WorldSpec


def own_policy_state(learner_state: dict[str, Any], agent_id: int) -> dict[str, torch.Tensor]:
    """pi_ii's parameters from a learner's state_dict: `policy` for every algorithm but PS, whose pi_ii is
    its own copy `copies.<i>` (agent/algorithms/ps.py)."""
    if "policy" in learner_state:
        return learner_state["policy"]
    prefix = f"{agent_id}."
    return {k[len(prefix):]: v for k, v in learner_state["copies"].items() if k.startswith(prefix)}


class Policy:
    """pi_ii and a seeded RNG: actions for B observations at once, sampled or greedy."""

    def __init__(self, net: PolicyNet, seed: int):
        self.net = net.eval()
        self.rng = np.random.default_rng(seed)

    @classmethod
    def from_checkpoint(cls, learner_state: dict[str, Any], agent_id: int, spec: WorldSpec, config: RunConfig,
                        seed: int) -> "Policy":
        net = PolicyNet(spec.obs_shape, spec.n_actions, config.hidden)
        net.load_state_dict(own_policy_state(learner_state, agent_id))
        return cls(net, seed)

    def act(self, obs: np.ndarray, greedy: bool = False) -> np.ndarray:
        """a ~ pi_ii(.|o) for each of the B observations [B, *obs_shape] (argmax with `greedy`) -> int64 [B]."""
        with torch.no_grad():
            probs = self.net.probs(obs_tensor(obs)).numpy()
        return probs.argmax(axis=1).astype(np.int64) if greedy else sample(probs, self.rng)


class ExportedPolicy(nn.Module):
    """What an export holds: observations as the world serves them [B, *obs_shape] (float32, or uint8
    images) -> pi(.|o) [B, A]. `act(obs, greedy)` draws actions with torch's own RNG."""

    def __init__(self, net: PolicyNet, uint8_obs: bool):
        super().__init__()
        self.body = net.body
        self.uint8_obs = uint8_obs

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        flat = obs.reshape(obs.shape[0], -1).to(torch.float32)
        if self.uint8_obs:
            flat = flat / 255.0
        return torch.softmax(self.body(flat), dim=-1)

    @torch.jit.export
    def act(self, obs: torch.Tensor, greedy: bool = False) -> torch.Tensor:
        probs = self.forward(obs)
        if greedy:
            return probs.argmax(dim=-1)
        return torch.multinomial(probs, 1).squeeze(-1)


def export_torchscript(policy: Policy, spec: WorldSpec, path: Path) -> Path:
    """pi_ii as a TorchScript file at `path` (torch.jit.load(path)(obs) -> probabilities). torch 2.13
    deprecates TorchScript in favour of torch.export, but still writes and loads it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.script(ExportedPolicy(policy.net, spec.obs_dtype == "uint8"))
    path.parent.mkdir(parents=True, exist_ok=True)
    module.save(str(path))
    return path

"""`ss-eval`: evaluation metrics of a trained run, its GIF, and TorchScript policies that a torch-only
process loads and acts with; each export holds its own agent's policy and nothing else."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from agent.algorithms import make_learner
from agent.policy import Policy, own_policy_state
from agent.records import load_checkpoints
from coordinator.research.evaluate import evaluate, load_policies, play
from coordinator.sim import Simulation
from envserver.worlds import make_world
from protocol.run.config import RunConfig
from protocol.run.rundir import RunDir
from protocol.run.topology import resolve_neighbors
from tests.procs import script
from tests.test_render import gif_frames

REPO = Path(__file__).resolve().parents[1]


def trained(tmp_path: Path, env: str = "predation", algo: str = "ss") -> tuple[Path, RunConfig]:
    config = dataclasses.replace(RunConfig(), env=env, agents=2, episodes=8, batch=4, hidden=(16,), algo=algo)
    Simulation(config, tmp_path / env).run(progress=False)
    return tmp_path / env, config


def test_eval_prints_metrics_writes_a_gif_and_exports(tmp_path: Path) -> None:
    run, _ = trained(tmp_path)
    out = subprocess.run([script("ss-eval"), str(run), "--episodes", "8", "--greedy", "--render",
                          str(tmp_path / "ep.gif"), "--export", str(tmp_path / "export")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for name in ("policies of update 2", "8 episodes, greedy", "collective_return", "normalized_return", "cc_rate"):
        assert name in out.stdout
    assert len(gif_frames(tmp_path / "ep.gif")) == 31  # T + 1 frames
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["agent_0.pt", "agent_1.pt"]
    update, row = evaluate(run, 8, greedy=True, seed=1000)
    assert f"{row['normalized_return']:.4f}" in out.stdout


def test_eval_is_seeded_and_plays_the_checkpointed_policies(tmp_path: Path) -> None:
    run, config = trained(tmp_path)
    assert evaluate(run, 6, False, 5) == evaluate(run, 6, False, 5)
    assert evaluate(run, 6, False, 5) != evaluate(run, 6, False, 6)
    # by hand: the learners restored from the same checkpoints, acting greedily on the same world
    world = make_world(config.env, 2, 6, 7)
    saved = [load_checkpoints(RunDir(run).checkpoint(i)) for i in range(2)]
    learners = [make_learner(i, world.spec, resolve_neighbors(config, world.spec)[i], config) for i in range(2)]
    for i, learner in enumerate(learners):
        learner.load_state_dict(saved[i][2]["learner"])
    total = np.zeros(6)
    result = world.reset()
    while not result.done:
        with torch.no_grad():
            actions = np.stack([learner.policy.probs(torch.from_numpy(result.obs[i])).argmax(1).numpy()
                                for i, learner in enumerate(learners)])
        result = world.step(actions)
        total += result.rewards.sum(axis=0)
    _, row = evaluate(run, 6, True, 7)
    assert row["collective_return"] == pytest.approx(total.mean(), abs=1e-9)


def test_bad_run_directory_is_one_line(tmp_path: Path) -> None:
    out = subprocess.run([script("ss-eval"), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "not a run directory" in out.stderr and "Traceback" not in out.stderr


TORCH_ONLY = textwrap.dedent("""
    import sys

    class NothingOfOurs:  # any import of our packages fails in this process
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("agent", "coordinator", "envserver", "protocol"):
                raise ImportError("not allowed here: " + name)

    sys.meta_path.insert(0, NothingOfOurs())
    sys.path = [p for p in sys.path if p and p != {repo!r}]
    import torch
    policy = torch.jit.load(sys.argv[1])
    obs = torch.tensor({obs!r}, dtype=torch.float32)
    probs = policy(obs)
    greedy = policy.act(obs, True)
    sampled = policy.act(obs, False)
    ours = sorted(m for m in sys.modules if m.split(".")[0] in ("agent", "coordinator", "envserver", "protocol"))
    assert not ours, ours
    print(repr((probs.tolist(), greedy.tolist(), sampled.shape[0])))
""")


def test_export_loads_and_acts_in_a_torch_only_process(tmp_path: Path) -> None:
    run, config = trained(tmp_path)
    subprocess.run([script("ss-eval"), str(run), "--episodes", "1", "--export", str(tmp_path / "x")],
                   check=True, capture_output=True, timeout=300)
    world = make_world(config.env, 2, 3, 1)
    obs = world.reset().obs  # [N, B, D]
    _, policies = load_policies(RunDir(run), config, world.spec, 0)
    for i in range(2):
        code = TORCH_ONLY.format(repo=str(REPO), obs=obs[i].tolist())
        out = subprocess.run([sys.executable, "-I", "-c", code, str(tmp_path / "x" / f"agent_{i}.pt")],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        probs, greedy, n = ast.literal_eval(out.stdout.strip())
        with torch.no_grad():
            expected = policies[i].net.probs(torch.from_numpy(obs[i]))
        np.testing.assert_allclose(probs, expected.numpy(), rtol=1e-6)
        assert greedy == expected.argmax(1).tolist() and n == 3


@pytest.mark.parametrize("algo", ["ss", "ps"])
def test_each_export_holds_only_its_agents_policy(tmp_path: Path, algo: str) -> None:
    run, _ = trained(tmp_path, algo=algo)
    subprocess.run([script("ss-eval"), str(run), "--episodes", "1", "--export", str(tmp_path / "x")],
                   check=True, capture_output=True, timeout=300)
    for i in range(2):
        exported = torch.jit.load(str(tmp_path / "x" / f"agent_{i}.pt")).state_dict()
        own = own_policy_state(load_checkpoints(RunDir(run).checkpoint(i))[2]["learner"], i)
        assert set(own) == set(exported)  # no critic, suggestion net or other agent's copy
        for k, v in own.items():
            assert torch.equal(exported[k], v)
        other = own_policy_state(load_checkpoints(RunDir(run).checkpoint(1 - i))[2]["learner"], 1 - i)
        assert not all(torch.equal(exported[k], v) for k, v in other.items())


def test_uint8_worlds_are_scaled_inside_the_export(tmp_path: Path) -> None:
    run, config = trained(tmp_path, env="harvest")
    world = make_world("harvest", 2, 2, 0)
    _, policies = load_policies(RunDir(run), config, world.spec, 0)
    from agent.policy import export_torchscript
    path = export_torchscript(policies[0], world.spec, tmp_path / "h.pt")
    obs = world.reset().obs[0]
    with torch.no_grad():
        np.testing.assert_allclose(torch.jit.load(str(path))(torch.from_numpy(obs)).numpy(),
                                   policies[0].net.probs(torch.from_numpy(obs).float().reshape(2, -1) / 255).numpy(),
                                   rtol=1e-6)
    assert play(world, policies, greedy=True)["episode"] == 2

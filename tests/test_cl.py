"""CL: the central critic's math by hand, the CL agent's update, and `ss-cluster --algo cl` (a separate central
learner process) bit-identical to `ss-sim`, with an audit that shows every agent's REWARD going to it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from agent.algorithms import make_learner
from agent.algorithms.cl import CLLearner
from agent.central_critic import CentralCritic, check_report
from coordinator.sim import Simulation
from protocol.audit.verify import verify_log
from protocol.wire.codec import ProtocolError, decode, encode
from protocol.run.config import RunConfig, resolve
from protocol.wire.messages import Kind, Message
from protocol.run.rundir import RunDir
from protocol.wire.spec import WorldSpec
from protocol.run.topology import resolve_neighbors
from tests.procs import run_sim_and_cluster, script

AGENTS = 3


def tiny_spec(n_agents: int = 2, horizon: int = 2, batch: int = 1) -> WorldSpec:
    return WorldSpec(name="toy", n_agents=n_agents, batch=batch, obs_shape=(1,), obs_dtype="float32", n_actions=2,
                     horizon=horizon, default_action=0, candidates=tuple(() for _ in range(n_agents)),
                     dynamic_neighbors=False)


def report(rewards: list[float], obs: list[float], last: float, truncated: list[bool],
           terminated: list[bool] | None = None) -> dict:
    f32 = lambda x: np.array(x, dtype=np.float32)  # noqa: E731
    return {"rewards": f32(rewards), "obs": f32(obs)[:, None], "last_obs": f32([[last]]),
            "terminated": np.array(terminated or [False] * len(rewards)), "truncated": np.array(truncated)}


def test_central_critic_gae_and_targets_on_the_summed_reward_by_hand() -> None:
    config = RunConfig(agents=2, gamma=0.5, lam=0.5, hidden=())
    central = CentralCritic(tiny_spec(), config)
    linear = central.critic.body[0]
    with torch.no_grad():  # V(s) = 1 * o_0 + 10 * o_1: the state is (o_0, o_1), in agent order
        linear.weight.copy_(torch.tensor([[1.0, 10.0]]))
        linear.bias.zero_()
    # T = 2, B = 1; the time limit ends the episode after the second step
    reports = [report([1, 2], [0.5, 0.25], 0.125, [False, True]),
               report([3, -1], [0.0, 0.5], 0.25, [False, True])]
    advantages = central.advantages(reports)
    # r_sum = [4, 1]; V(s_0) = 0.5, V(s_1) = 0.25 + 5 = 5.25, V(s_2) = 0.125 + 2.5 = 2.625
    # eq. 17: delta_1 = 1 + 0.5 * 2.625 - 5.25 = -2.9375 (bootstrapped at the time limit)
    #         delta_0 = 4 + 0.5 * 5.25 - 0.5 = 6.125;  A_0 = 6.125 + 0.25 * -2.9375 = 5.390625
    np.testing.assert_array_equal(advantages, np.array([5.390625, -2.9375], dtype=np.float32))
    # eq. 18: G_1 = 1 + 0.5 * V(s_2) = 2.3125, G_0 = 4 + 0.5 * G_1 = 5.15625
    np.testing.assert_array_equal(central.targets.numpy(), np.array([5.15625, 2.3125], dtype=np.float32))
    before = central.critic.body[0].weight.detach().clone()
    stats = central.fit()
    assert stats["value_loss"] > 0 and not torch.equal(before, central.critic.body[0].weight)
    with pytest.raises(RuntimeError, match="advantages"):
        central.fit()  # one fit per update
    # the same rollout when T is the end of the task (terminated): no bootstrap with V(s_2)
    ended = [report([1, 2], [0.5, 0.25], 0.125, [False, False], [False, True]),
             report([3, -1], [0.0, 0.5], 0.25, [False, False], [False, True])]
    with torch.no_grad():
        central.critic.body[0].weight.copy_(torch.tensor([[1.0, 10.0]]))
        central.critic.body[0].bias.zero_()
    # delta_1 = 1 - 5.25 = -4.25, A_0 = 6.125 + 0.25 * -4.25 = 5.0625; G_1 = 1, G_0 = 4 + 0.5 * 1 = 4.5
    np.testing.assert_array_equal(central.advantages(ended), np.array([5.0625, -4.25], dtype=np.float32))
    np.testing.assert_array_equal(central.targets.numpy(), np.array([4.5, 1.0], dtype=np.float32))


def test_central_critic_is_seeded_by_the_run_seed_alone_and_checks_reports() -> None:
    spec = tiny_spec()
    a, b = (CentralCritic(spec, RunConfig(agents=2, seed=4, hidden=(8,))) for _ in range(2))
    c = CentralCritic(spec, RunConfig(agents=2, seed=5, hidden=(8,)))
    flat = lambda m: torch.cat([p.reshape(-1) for p in m.critic.parameters()])  # noqa: E731
    assert torch.equal(flat(a), flat(b)) and not torch.equal(flat(a), flat(c))
    good = report([1, 2], [0.5, 0.25], 0.125, [False, True])
    assert check_report(good, spec) is None
    assert "obs shape" in check_report({**good, "obs": good["obs"][:1]}, spec)
    assert "no observations" in check_report({"rewards": good["rewards"]}, spec)


def test_reward_carries_rewards_and_observations_together_and_row_aligned() -> None:
    body = report([1, 2], [0.5, 0.25], 0.125, [False, True])
    msg = Message(Kind.REWARD, "r", 0, 0, body, round=0)
    np.testing.assert_array_equal(decode(encode(msg)).body["obs"], body["obs"])
    for broken, match in (({k: v for k, v in body.items() if k != "last_obs"}, "together"),
                          ({**body, "truncated": np.array([True])}, "rows")):
        with pytest.raises(ProtocolError, match=match):
            encode(Message(Kind.REWARD, "r", 0, 0, broken, round=0))


def test_cl_agent_has_no_critic_no_neighbours_and_steps_on_the_team_advantage() -> None:
    spec = tiny_spec(horizon=3, batch=2)
    config = RunConfig(agents=2, algo="cl", hidden=(8,), env="predation")
    assert resolve_neighbors(config, spec) == {0: (), 1: ()}
    learner = make_learner(0, spec, (1,), config)
    assert isinstance(learner, CLLearner) and learner.candidates == () and set(learner.nets()) == {"policy"}
    rng = np.random.default_rng(0)
    for t in range(3):
        learner.act(rng.random((2, 1), dtype=np.float32), np.zeros((2, 0), dtype=bool))
        learner.record(rng.random(2, dtype=np.float32), t == 2, False, rng.random((2, 1), dtype=np.float32))
    body = learner.report()
    assert check_report(body, spec) is None
    np.testing.assert_array_equal(body["terminated"], [False, False, False, False, True, True])
    assert not body["truncated"].any()
    with pytest.raises(RuntimeError, match="receive_advantages"):
        learner.begin_update()
    team = np.arange(6, dtype=np.float32) - 2.5
    learner.receive_advantages({"advantages": team})
    learner.begin_update()
    before = learner.flat_parameters().copy()
    for k in range(config.iterations):
        learner.update_step(k, {})
    stats = learner.end_update()
    assert stats["value_loss"] == 0.0 and stats["kappa"] == pytest.approx(np.abs(team).mean())
    assert not np.array_equal(before, learner.flat_parameters())


@pytest.mark.timeout(300)
@pytest.mark.slow
@pytest.mark.parametrize("env", ["predation", "navigation"])
def test_cl_cluster_matches_sim_and_the_audit_shows_every_reward_going_to_the_learner(tmp_path: Path,
                                                                                       env: str) -> None:
    small = tmp_path / "small.toml"
    small.write_text("hidden = [16]\n")
    opts = ["--env", env, "--agents", str(AGENTS), "--episodes", "4", "--batch", "2", "--seed", "3",
            "--algo", "cl", "--config", str(small)]
    sim, out, listed = run_sim_and_cluster(tmp_path, opts)
    assert [p["role"] for p in listed].count("learner") == 1
    assert (out / "metrics.csv").read_bytes() == (sim / "metrics.csv").read_bytes()
    for i in range(AGENTS):
        assert (out / f"agents/{i}/train.csv").read_bytes() == (sim / f"agents/{i}/train.csv").read_bytes()
    assert (out / "logs/learner.train.csv").read_bytes() == (sim / "logs/learner.train.csv").read_bytes()
    sim_critic, cluster_critic = (torch.load(d / "logs/learner.checkpoint.pt") for d in (sim, out))
    assert sim_critic["update"] == cluster_critic["update"] == 2
    for name, value in sim_critic["learner"]["critic"].items():
        assert torch.equal(value, cluster_critic["learner"]["critic"][name]), name

    audit = subprocess.run([script("ss-audit"), str(out), "--verify", "--json"], capture_output=True, text=True,
                           timeout=60)
    assert audit.returncode == 0, audit.stderr
    agents = json.loads(audit.stdout)["agents"]
    assert set(agents) == {str(i) for i in range(AGENTS)}
    for i, agent in agents.items():
        assert "REWARD" in agent["sent"] and not {"DIST", "SUGG", "ADV"} & set(agent["sent"]), (i, agent["sent"])
        assert set(agent["to"]["learner"]) == {"REWARD"}
        assert agent["to"]["learner"]["REWARD"]["messages"] == 2  # one per update
        assert not any("REWARD" in kinds for dest, kinds in agent["to"].items() if dest != "learner")
    learner_log = RunDir(out).process_audit("learner")
    assert verify_log(learner_log, "learner", "cl").ok
    records = [json.loads(line) for line in learner_log.read_text().splitlines()]
    adv = sorted(r["dest"] for r in records if r["kind"] == "ADV")
    assert adv == sorted(f"agent:{i}" for i in range(AGENTS) for _ in range(2))  # the team advantage, per update


def test_cl_sim_resumes_bit_identically_with_the_central_critic(tmp_path: Path) -> None:
    """Stopped after 2 of 4 updates and resumed: the same files, and the same central critic, as one run."""
    def config(episodes: int) -> RunConfig:
        return resolve(None, {"env": "predation", "agents": 2, "episodes": episodes, "batch": 2, "seed": 4,
                              "algo": "cl", "hidden": [16], "checkpoint_every": 1})

    straight = Simulation(config(8), tmp_path / "straight")
    straight.run(progress=False)
    Simulation(config(4), tmp_path / "resumed").run(progress=False)
    resumed = Simulation(config(8), tmp_path / "resumed")
    assert resumed.resume() == 2
    resumed.run(progress=False)
    for name in ("metrics.csv", "agents/0/train.csv", "agents/1/train.csv", "logs/learner.train.csv"):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "straight" / name).read_bytes(), name
    for a, b in zip(straight.central.critic.parameters(), resumed.central.critic.parameters()):
        assert torch.equal(a, b)

    for name in ("learner.checkpoint.pt", "learner.checkpoint.pt.prev"):
        (tmp_path / "resumed/logs" / name).unlink()
    with pytest.raises(RuntimeError, match="checkpoints disagree .*central learner: none"):
        Simulation(config(8), tmp_path / "resumed").resume()


def test_a_missing_report_counts_as_zero_and_the_critic_skips_the_update() -> None:
    config = RunConfig(agents=2, gamma=0.5, lam=0.5, hidden=())
    central = CentralCritic(tiny_spec(), config)
    before = [p.detach().clone() for p in central.critic.parameters()]
    full = central.advantages([report([1, 2], [0.5, 0.25], 0.125, [False, True]),
                               report([0, 0], [0.0, 0.0], 0.0, [False, True])])
    central.fit()
    central.critic.load_state_dict({k: v for k, v in zip(central.critic.state_dict(), before)})
    missing = central.advantages([report([1, 2], [0.5, 0.25], 0.125, [False, True]), None])
    np.testing.assert_array_equal(missing, full)  # the straggler's share stands in as zeros
    assert not central.complete and np.isnan(central.fit()["value_loss"])
    assert all(torch.equal(p, q) for p, q in zip(central.critic.parameters(), before))  # no step taken

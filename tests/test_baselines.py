"""The baselines (DESIGN.md section 4) on the shared PPO core: consensus weights, VS averaging, the PS joint
ratio, IMR shaping, and every baseline training in the in-process simulator."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from agent.algorithms import make_learner
from agent.algorithms.consensus import consensus, flat, load_flat, metropolis_row, mix_parameters
from agent.algorithms.imr import imr_rewards, kind_actions
from agent.algorithms.ps import JointFactor, joint_ratio_loss
from agent.algorithms.vs import mean_advantage
from agent.buffer import Rollout
from tests.routing import route_in_memory
from agent.algorithms.ss import SSLearner
from agent.nets import PolicyNet
from agent.ss_loss import ss_loss
from coordinator.sim import Simulation
from envserver.worlds.base import WorldSpec, complete_graph, line_graph
from envserver.worlds.cleanup import CLEAN
from envserver.worlds.predation import PredationWorld
from protocol.run.config import RunConfig
from protocol.wire.messages import Kind

torch.set_num_threads(1)

# ---- Metropolis consensus -----------------------------------------------------------------------

STAR = {0: (1, 2, 3, 4), 1: (0,), 2: (0,), 3: (0,), 4: (0,)}
RING = {i: tuple(sorted({(i - 1) % 6, (i + 1) % 6})) for i in range(6)}
IRREGULAR = {0: (1,), 1: (0, 2, 3), 2: (1, 3), 3: (1, 2, 4), 4: (3,)}
GRAPHS = {
    "line": dict(enumerate(line_graph(5))),
    "complete": dict(enumerate(complete_graph(4))),
    "star": STAR,
    "ring": RING,
    "irregular": IRREGULAR,
}


def weight_matrix(graph: dict[int, tuple[int, ...]]) -> np.ndarray:
    n = len(graph)
    W = np.zeros((n, n))
    for i in graph:
        for j, w in metropolis_row(graph, i).items():
            W[i, j] = w
    return W


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_metropolis_weights_are_symmetric_and_doubly_stochastic(name: str) -> None:
    W = weight_matrix(GRAPHS[name])
    np.testing.assert_allclose(W.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(W.sum(axis=0), 1.0, atol=1e-12)
    np.testing.assert_array_equal(W, W.T)
    assert (W >= 0).all() and (np.diag(W) > 0).all()


def test_metropolis_row_by_hand() -> None:
    # the star's hub has degree 4, its leaves 1: W_0j = 1/5, W_00 = 1/5, W_j0 = 1/5, W_jj = 4/5
    assert metropolis_row(STAR, 0) == pytest.approx({0: 0.2, 1: 0.2, 2: 0.2, 3: 0.2, 4: 0.2})
    assert metropolis_row(STAR, 3) == pytest.approx({3: 0.8, 0: 0.2})
    assert metropolis_row(IRREGULAR, 2) == pytest.approx({2: 1 - 0.25 - 0.25, 1: 0.25, 3: 0.25})


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_repeated_consensus_converges_to_the_average(name: str) -> None:
    graph = GRAPHS[name]
    rng = np.random.default_rng(0)
    theta = {i: torch.from_numpy(rng.normal(size=7).astype(np.float32)) for i in graph}
    average = np.mean([t.numpy() for t in theta.values()], axis=0)
    for _ in range(300):
        theta = {i: consensus(theta[i], {j: theta[j] for j in graph[i]}, metropolis_row(graph, i), i)
                 for i in graph}
    for t in theta.values():
        np.testing.assert_allclose(t.numpy(), average, atol=1e-5)


def test_a_missing_neighbour_drops_out_and_the_rest_is_renormalised() -> None:
    row = metropolis_row(dict(enumerate(complete_graph(3))), 0)  # 1/3 each
    own, one, two = torch.tensor([3.0]), torch.tensor([6.0]), torch.tensor([30.0])
    assert float(consensus(own, {1: one, 2: two}, row, 0)) == pytest.approx(13.0)
    assert float(consensus(own, {1: one}, row, 0)) == pytest.approx(4.5)  # (3 + 6) / 2
    assert float(consensus(own, {}, row, 0)) == 3.0


def test_parameters_round_trip_and_mix_in_place() -> None:
    torch.manual_seed(0)
    a, b = PolicyNet((3,), 2, (4,)), PolicyNet((3,), 2, (4,))
    before_a, before_b = flat(a).clone(), flat(b).clone()
    load_flat(b, before_b)
    np.testing.assert_array_equal(flat(b).numpy(), before_b.numpy())
    line = dict(enumerate(line_graph(2)))  # W = [[1/2, 1/2], [1/2, 1/2]]
    mix_parameters(a, {1: {"params": before_b.numpy()}}, metropolis_row(line, 0), 0)
    np.testing.assert_allclose(flat(a).numpy(), ((before_a + before_b) / 2).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="parameters from 1"):
        mix_parameters(a, {1: {"params": before_b.numpy()[:-1]}}, metropolis_row(line, 0), 0)


# ---- learners on a toy world ----------------------------------------------------------------------

T, B = 4, 2
SPEC = WorldSpec(name="toy", n_agents=3, batch=B, obs_shape=(3,), obs_dtype="float32", n_actions=3, horizon=T,
                 default_action=0, candidates=line_graph(3), dynamic_neighbors=True)


def toy_config(algo: str, **overrides) -> RunConfig:
    return RunConfig(**{"env": "navigation", "agents": 3, "batch": B, "seed": 7, "hidden": (8,), "iterations": 2,
                        "algo": algo, "actor_lr": 1e-2, "critic_lr": 1e-2, **overrides})


def toy_learners(algo: str, **overrides) -> dict:
    config = toy_config(algo, **overrides)
    return {i: make_learner(i, SPEC, SPEC.candidates[i], config) for i in range(3)}


def toy_rollout(learners: dict, data: np.random.Generator) -> None:
    for t in range(T):
        for i, learner in learners.items():
            obs = data.standard_normal((B, 3)).astype(np.float32)
            learner.act(obs, data.random((B, len(SPEC.candidates[i]))) < 0.6)
        for learner in learners.values():
            learner.record(data.standard_normal(B).astype(np.float32), t == T - 1, False,
                           data.standard_normal((B, 3)).astype(np.float32))


def toy_update(learners: dict, drop=lambda k, i, j: False) -> dict[int, dict[str, float]]:
    """K rounds over the in-memory exchange; `drop(k, i, j)` loses j's round-k messages to i."""
    for learner in learners.values():
        learner.begin_update()
    for k in range(learners[0].config.iterations):
        inboxes = route_in_memory({i: l.outgoing(k) for i, l in learners.items()}, dict(enumerate(SPEC.candidates)))
        for i, learner in learners.items():
            learner.update_step(k, {j: m for j, m in inboxes[i].items() if not drop(k, i, j)})
    return {i: l.end_update() for i, l in learners.items()}


def test_make_learner_chooses_by_algo_and_every_algo_starts_from_ippos_policy() -> None:
    ippo = toy_learners("ippo")
    for algo in ("vs", "vps", "ps", "imr", "cl"):
        learners = toy_learners(algo)
        assert type(learners[1]).__name__.lower().startswith(algo)
        for i in range(3):
            np.testing.assert_array_equal(flat(learners[i].policy).numpy(), flat(ippo[i].policy).numpy())
    assert type(toy_learners("ss")[0]) is SSLearner
    with pytest.raises(ValueError, match="no learner"):
        make_learner(0, SPEC, (1,), RunConfig(algo="nope"))


def test_vs_averages_the_advantages_of_the_neighbours_present_at_each_step() -> None:
    own = torch.tensor([1.0, 2.0, -3.0, 4.0])
    a1, m1 = torch.tensor([3.0, 0.0, 6.0, -4.0]), torch.tensor([1.0, 1.0, 0.0, 0.0])
    a2, m2 = torch.tensor([5.0, 7.0, 9.0, 8.0]), torch.tensor([1.0, 0.0, 1.0, 0.0])
    expected = [(1 + 3 + 5) / 3, (2 + 0) / 2, (-3 + 9) / 2, 4.0]
    np.testing.assert_allclose(mean_advantage(own, [(a1, m1), (a2, m2)]).numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(mean_advantage(own, []).numpy(), own.numpy())


def test_vs_shares_advantages_once_per_batch_and_its_policy_uses_their_masked_mean() -> None:
    learners = toy_learners("vs")
    toy_rollout(learners, np.random.default_rng(1))
    for learner in learners.values():
        learner.begin_update()
    sent = {i: l.outgoing(0) for i, l in learners.items()}
    assert all(set(out.broadcast) == {Kind.ADV} and not out.addressed for out in sent.values())
    assert learners[1].expected(0) == {0: frozenset({Kind.ADV}), 2: frozenset({Kind.ADV})}
    assert learners[1].outgoing(1).broadcast == {} and learners[1].expected(1) == {}
    inbox = route_in_memory(sent, dict(enumerate(SPEC.candidates)))[1]
    learners[1].update_step(0, inbox)
    u = learners[1]._current()
    a0, a2 = (torch.from_numpy(sent[j].broadcast[Kind.ADV]["advantages"]) for j in (0, 2))
    m0, m2 = u.masks[:, 0], u.masks[:, 1]
    by_hand = (u.advantages + m0 * a0 + m2 * a2) / (1 + m0 + m2)
    np.testing.assert_allclose(learners[1].policy_advantages.numpy(), by_hand.numpy(), rtol=1e-6)
    assert 0 < float(m0.mean()) < 1  # the masks really switch neighbours on and off


def test_vs_counts_a_missing_advantage_as_a_gap_and_averages_without_it() -> None:
    learners = toy_learners("vs")
    toy_rollout(learners, np.random.default_rng(2))
    stats = toy_update(learners, drop=lambda k, i, j: (i, j) == (1, 0))
    assert stats[1]["comm_gaps"] == 1 and stats[0]["comm_gaps"] == 0 and stats[2]["comm_gaps"] == 0
    assert all(math.isfinite(stats[1][key]) for key in ("policy_loss", "value_loss", "entropy"))


def test_vps_critics_start_identical_share_every_round_and_move_together() -> None:
    learners = toy_learners("vps")
    critics = [flat(l.critic).numpy() for l in learners.values()]
    assert all(np.array_equal(c, critics[0]) for c in critics)
    assert not np.array_equal(critics[0], flat(toy_learners("ippo")[0].critic).numpy())
    toy_rollout(learners, np.random.default_rng(3))
    for learner in learners.values():
        learner.begin_update()
    for k in range(2):
        out = learners[0].outgoing(k)
        assert set(out.broadcast) == {Kind.CRITIC_PARAMS}
        np.testing.assert_array_equal(out.broadcast[Kind.CRITIC_PARAMS]["params"], flat(learners[0].critic).numpy())
        inboxes = route_in_memory({i: l.outgoing(k) for i, l in learners.items()}, dict(enumerate(SPEC.candidates)))
        before = {i: flat(l.critic).clone() for i, l in learners.items()}
        for i, learner in learners.items():
            learner.update_step(k, inboxes[i])
        # consensus then a critic step: every critic moved
        assert all(not torch.equal(before[i], flat(l.critic)) for i, l in learners.items())
    policies = {i: flat(l.policy).numpy() for i, l in learners.items()}
    assert not np.array_equal(policies[0], policies[1])  # policies stay individual


def test_vps_consensus_without_a_step_is_the_metropolis_average() -> None:
    learners = toy_learners("vps", critic_lr=0.0)  # Adam with lr 0: only the consensus moves the critic
    for i, learner in learners.items():
        with torch.no_grad():
            for p in learner.critic.parameters():
                p.fill_(float(i))  # critic i = all i's
    toy_rollout(learners, np.random.default_rng(4))
    toy_update(learners)  # two rounds of consensus on the line 0-1-2: W = [[2/3,1/3,0],[1/3,1/3,1/3],[0,1/3,2/3]]
    W = weight_matrix(dict(enumerate(SPEC.candidates)))
    expected = np.linalg.matrix_power(W, 2) @ np.array([0.0, 1.0, 2.0])
    for i, learner in learners.items():
        np.testing.assert_allclose(flat(learner.critic).numpy(), expected[i], rtol=1e-6)


def test_ps_joint_ratio_with_no_neighbours_is_ppo_exactly() -> None:
    torch.manual_seed(1)
    R, A = 6, 3
    logits = torch.randn(R, A, requires_grad=True)
    values = torch.randn(R, requires_grad=True)
    actions, behaviour = torch.tensor([0, 1, 2, 1, 0, 2]), torch.rand(R) * 0.8 + 0.1
    adv, returns = torch.randn(R), torch.randn(R)
    common = dict(actions=actions, behaviour=behaviour, advantages=adv, clip_eps=0.2, values=values,
                  returns=returns, value_coef=0.5, valid=torch.ones(R))
    ps = joint_ratio_loss(logp_own=torch.log_softmax(logits, 1), others=[], **common)
    ppo = ss_loss(logp_ii=torch.log_softmax(logits, 1), kappa=1.0, rho=3.0, neighbours=[], **common)
    assert torch.equal(ps.total, ppo.total)
    grads_ps = torch.autograd.grad(ps.total, (logits, values))
    ps2 = joint_ratio_loss(logp_own=torch.log_softmax(logits, 1), others=[], **common)
    ppo2 = ss_loss(logp_ii=torch.log_softmax(logits, 1), kappa=1.0, rho=3.0, neighbours=[], **common)
    assert torch.equal(ps2.total, ppo2.total)
    for g_ps, g_ppo in zip(grads_ps, torch.autograd.grad(ppo2.total, (logits, values))):
        assert torch.equal(g_ps, g_ppo)


def test_ps_joint_ratio_by_hand() -> None:
    R = 4
    p_own = torch.tensor([[0.5, 0.5], [0.2, 0.8], [0.9, 0.1], [0.6, 0.4]])
    p_j = torch.tensor([[0.3, 0.7], [0.5, 0.5], [0.25, 0.75], [0.8, 0.2]], requires_grad=True)
    a_i, beh_i = torch.tensor([0, 1, 0, 1]), torch.tensor([0.5, 0.5, 0.5, 0.5])
    a_j, beh_j = torch.tensor([1, 0, 1, 0]), torch.tensor([0.7, 0.4, 0.5, 0.5])
    mask = torch.tensor([1.0, 1.0, 0.0, 1.0])
    adv = torch.tensor([1.0, -1.0, 2.0, 0.5])
    terms = joint_ratio_loss(p_own.log(), a_i, beh_i, [JointFactor(p_j.log(), a_j, beh_j, mask)], adv, 0.2,
                             torch.zeros(R), torch.zeros(R), 0.5, torch.ones(R))
    ratio = np.array([0.5 / 0.5 * 0.7 / 0.7, 0.8 / 0.5 * 0.5 / 0.4, 0.9 / 0.5, 0.4 / 0.5 * 0.8 / 0.5])
    a = adv.numpy()
    surr = np.minimum(ratio * a, np.clip(ratio, 0.8, 1.2) * a)
    assert terms.surrogate == pytest.approx(float(surr.mean()), rel=1e-6)
    assert float(terms.total.detach()) == pytest.approx(-float(surr.mean()), rel=1e-6)
    terms.total.backward()
    assert p_j.grad[2].abs().sum() == 0  # a masked-out step gives the copy of j no gradient


def test_ps_copies_start_as_each_agents_policy_and_exchange_round_zero_only() -> None:
    learners = toy_learners("ps")
    for i, learner in learners.items():
        assert learner.policy is learner.copies[str(i)]
        for j in range(3):
            np.testing.assert_array_equal(flat(learner.copies[str(j)]).numpy(), flat(learners[j].policy).numpy())
    toy_rollout(learners, np.random.default_rng(5))
    for learner in learners.values():
        learner.begin_update()
    out = learners[1].outgoing(0)
    assert set(out.broadcast) == {Kind.DIST, Kind.POLICY_PARAMS} and not out.addressed
    assert out.broadcast[Kind.POLICY_PARAMS]["owner"] == 1
    assert out.broadcast[Kind.POLICY_PARAMS]["params"].size == 3 * flat(learners[1].policy).numel()
    assert learners[1].outgoing(1).broadcast == {} and learners[1].expected(1) == {}
    assert learners[1].expected(0) == {j: frozenset({Kind.DIST, Kind.POLICY_PARAMS}) for j in (0, 2)}


def test_ps_trains_the_copies_of_its_neighbours_and_keeps_copies_in_consensus() -> None:
    learners = toy_learners("ps")
    start = {i: {j: flat(l.copies[str(j)]).clone() for j in range(3)} for i, l in learners.items()}
    toy_rollout(learners, np.random.default_rng(6))
    stats = toy_update(learners)
    assert all(s["comm_gaps"] == 0 and math.isfinite(s["policy_loss"]) for s in stats.values())
    # agent 0 (neighbour: 1) trains its copies of 0 and 1; its copy of 2 only moves by consensus
    assert not torch.equal(flat(learners[0].copies["1"]), start[0][1])
    np.testing.assert_array_equal(flat(learners[0].copies["2"]).numpy(), start[0][2].numpy())
    toy_rollout(learners, np.random.default_rng(7))
    toy_update(learners)  # round 0 mixes 1's copy of 2 (trained) into 0's
    assert not torch.equal(flat(learners[0].copies["2"]), start[0][2])


def test_ps_state_dict_round_trip() -> None:
    learners = toy_learners("ps")
    toy_rollout(learners, np.random.default_rng(8))
    toy_update(learners)
    state = learners[1].state_dict()
    assert {"copies", "critic", "optimizer", "rng", "updates"} == set(state)
    fresh = toy_learners("ps")[1]
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(fresh.flat_parameters(), learners[1].flat_parameters())
    assert fresh.policy is fresh.copies["1"]


# ---- IMR ------------------------------------------------------------------------------------------


def hand_rollout(obs: np.ndarray, actions: list, rewards: list) -> Rollout:
    actions, rewards = np.array(actions, dtype=np.int64), np.array(rewards, dtype=np.float32)
    return Rollout(obs=obs, next_obs=obs, actions=actions, behaviour=np.full(actions.shape, 0.5, np.float32),
                   masks=np.zeros((*actions.shape, 0), bool), rewards=rewards,
                   terminated=np.zeros(actions.shape, bool), truncated=np.zeros(actions.shape, bool),
                   valid=np.ones(actions.shape, bool))


def test_imr_rewards_the_kind_action_of_each_env() -> None:
    grid_obs = np.zeros((3, 1, 2, 2, 3), np.uint8)
    cleanup = hand_rollout(grid_obs, [[CLEAN], [0], [3]], [[0], [1], [0]])
    np.testing.assert_array_equal(imr_rewards("cleanup", cleanup, 0, 0.5), [[0.5], [1.0], [0.0]])
    harvest = hand_rollout(grid_obs, [[0], [1], [2]], [[1], [0], [0]])  # eating pays 1: not eating is kind
    np.testing.assert_array_equal(imr_rewards("harvest", harvest, 0, 0.25), [[1.0], [0.25], [0.25]])
    # predation: agent 1's own entry (x_1 - x_prey) / 30; approaching = right (1) when x_1 <= x_prey
    pred_obs = np.array([[[0.3, -0.2]], [[0.3, 0.1]], [[0.3, 0.0]], [[-0.3, 0.2]]], np.float32)
    pred = hand_rollout(pred_obs, [[1], [0], [1], [1]], [[-1], [-6], [0], [-1]])
    np.testing.assert_array_equal(kind_actions("predation", pred, 1), [[True], [True], [True], [False]])
    np.testing.assert_array_equal(imr_rewards("predation", pred, 1, 0.1),
                                  np.array([[-0.9], [-5.9], [0.1], [-1.0]], np.float32))
    nav = hand_rollout(np.zeros((2, 1, 4), np.float32), [[0], [1]], [[-0.5], [0.0]])
    np.testing.assert_array_equal(imr_rewards("navigation", nav, 0, 0.1), nav.rewards)  # IMR = IPPO


def verdicts(obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """IMR's kind-action flags [N, B] for one predation step: obs [N, B, N], actions [N, B]."""
    return np.array([kind_actions("predation", hand_rollout(obs[i][None], actions[i][None],
                                                            np.zeros((1, actions.shape[1]))), i)[0]
                     for i in range(len(actions))])


def test_imr_predation_rule_is_the_worlds_cooperation() -> None:
    world = PredationWorld(n_agents=4, batch=6, seed=0)
    rng = np.random.default_rng(0)
    result = world.reset()
    for _ in range(10):
        actions = rng.integers(0, 2, size=(4, 6))
        expected = verdicts(result.obs, actions)
        result = world.step(actions)
        np.testing.assert_array_equal(expected, world.cooperated)  # the world's own judgement
    placed = world.place(positions=np.array([[3.0], [20.0], [10.0], [10.0]]), prey=np.array([10.0]))
    np.testing.assert_array_equal(verdicts(placed.obs, np.array([[1] * 6, [1] * 6, [1] * 6, [0] * 6]))[:, 0],
                                  [True, False, True, False])  # on the prey, right counts as approaching


def test_imr_learns_from_the_shaped_reward_and_reports_the_envs() -> None:
    config = RunConfig(env="cleanup", agents=2, batch=B, seed=7, hidden=(8,), iterations=1, algo="imr", imr_xi=0.5)
    spec = dataclasses.replace(SPEC, name="cleanup", n_agents=2, n_actions=8, candidates=((1,), (0,)))
    imr, ippo = (make_learner(0, spec, (1,), dataclasses.replace(config, algo=a)) for a in ("imr", "ippo"))
    assert imr.candidates == () and imr.subscriptions().all == frozenset()
    data = np.random.default_rng(9)
    for t in range(T):
        obs = data.standard_normal((B, 3)).astype(np.float32)
        a_imr, a_ippo = imr.act(obs, np.ones((B, 1), bool)), ippo.act(obs, np.ones((B, 1), bool))
        np.testing.assert_array_equal(a_imr, a_ippo)
        rewards = data.standard_normal(B).astype(np.float32)
        for learner in (imr, ippo):
            learner.record(rewards, t == T - 1, False, obs)
    ro = imr.buffer.rollout()
    assert (ro.actions == CLEAN).any()
    imr.begin_update()
    ippo.begin_update()
    assert imr._current().mean_reward == ippo._current().mean_reward  # the env's reward, not the shaped one
    assert not torch.equal(imr._current().advantages, ippo._current().advantages)
    assert imr.outgoing(0).broadcast == {} and imr.outgoing(0).addressed == {}


# ---- config and the in-memory runs ---------------------------------------------------------------


def test_config_validates_the_baseline_options() -> None:
    for algo in ("vs", "vps", "ps"):
        with pytest.raises(ValueError, match="partners"):
            RunConfig(algo=algo, partners=2).validate()
    RunConfig(algo="ss", partners=2).validate()
    RunConfig(algo="vs", comm_every=2).validate()
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="imr_xi"):
            RunConfig(algo="imr", imr_xi=bad).validate()


@pytest.mark.parametrize("algo", ["vs", "vps", "ps", "imr"])
@pytest.mark.parametrize("env", ["predation", "navigation"])
def test_each_baseline_trains_in_the_simulator(tmp_path: Path, algo: str, env: str) -> None:
    config = RunConfig(env=env, agents=3, episodes=4, batch=2, seed=2, hidden=(16,), algo=algo, comm_every=1)
    sim = Simulation(config, tmp_path)
    before = [l.flat_parameters().copy() for l in sim.learners]
    sim.run(progress=False)
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 3
    for i, learner in enumerate(sim.learners):
        assert learner.updates == 2
        assert not np.array_equal(learner.flat_parameters(), before[i])
        rows = (tmp_path / f"agents/{i}/train.csv").read_text().splitlines()
        last = dict(zip(rows[0].split(","), rows[-1].split(",")))
        assert float(last["comm_gaps"]) == 0
        assert all(math.isfinite(float(last[k])) for k in ("policy_loss", "value_loss", "entropy", "kappa"))


def test_comm_every_skips_the_baselines_exchange() -> None:
    for algo in ("vs", "vps", "ps"):
        learners = toy_learners(algo, comm_every=2)
        toy_rollout(learners, np.random.default_rng(10))
        toy_update(learners)
        toy_rollout(learners, np.random.default_rng(11))
        learners[1].begin_update()
        assert learners[1].outgoing(0).broadcast == {} and learners[1].expected(0) == {}, algo

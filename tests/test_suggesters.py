"""--suggester: dense (the paper's nets on every row), sparse (the same nets and loss on the rows where a
neighbour is active), shared (one trunk, a head per neighbour)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from agent.algorithms.ss import SSLearner
from protocol.run.config import resolve
from protocol.wire.messages import Kind
from tests.procs import run_sim_and_cluster, script
from tests.test_learner import CONFIG, SPEC, B, T, make, update

# the toy world's candidates are 0-1-2; neighbourhoods are symmetric, as every world's are
PAIRS = ((0, 1), (1, 2))

SPARSE = dataclasses.replace(CONFIG, suggester="sparse")
SHARED = dataclasses.replace(CONFIG, suggester="shared")


def rollout(learners: dict[int, SSLearner], data: np.random.Generator) -> None:
    """One episode batch of random observations and rewards, with random symmetric neighbourhoods."""
    for t in range(T):
        near = {pair: data.random(B) < 0.6 for pair in PAIRS}
        for i, learner in learners.items():
            mask = np.stack([near[tuple(sorted((i, j)))] for j in SPEC.candidates[i]], axis=1)
            learner.act(data.standard_normal((B, *SPEC.obs_shape)).astype(np.float32), mask)
        for learner in learners.values():
            learner.record(data.standard_normal(B).astype(np.float32), t == T - 1, False,
                           data.standard_normal((B, 3)).astype(np.float32))


def train(learners: dict[int, SSLearner], updates: int, data: np.random.Generator) -> list[dict]:
    history = []
    for _ in range(updates):
        rollout(learners, data)
        history.append(update(learners))
    return history


def test_sparse_trains_the_same_nets_as_dense_to_float_rounding() -> None:
    dense, sparse = make(CONFIG), make(SPARSE)
    dense_stats = train(dense, 3, np.random.default_rng(11))
    sparse_stats = train(sparse, 3, np.random.default_rng(11))
    for i in dense:
        np.testing.assert_allclose(sparse[i].flat_parameters(), dense[i].flat_parameters(), rtol=0, atol=1e-5)
        for d, s in zip(dense_stats, sparse_stats):
            for key in ("policy_loss", "penalty", "suggestion_mse", "comm_gaps"):
                assert s[i][key] == pytest.approx(d[i][key], rel=1e-4, abs=1e-7), key
    assert any(s[1]["penalty"] > 0 for s in sparse_stats)  # the neighbour terms were there to compare


def test_sparse_messages_hold_only_the_rows_their_addressees_need() -> None:
    learners = make(SPARSE)
    rollout(learners, np.random.default_rng(12))
    one = learners[1]  # candidates 0 and 2
    one.begin_update()
    near = one._current().masks.numpy() > 0  # [R, 2]
    out = one.outgoing(0)
    dist = out.broadcast[Kind.DIST]
    np.testing.assert_array_equal(dist["rows"], near.any(axis=1))
    assert dist["probs"].shape == (near.any(axis=1).sum(), SPEC.n_actions)
    assert dist["actions"].shape == dist["behaviour"].shape == (near.any(axis=1).sum(),)
    for m, j in enumerate((0, 2)):
        sugg = out.addressed[j][Kind.SUGG]
        np.testing.assert_array_equal(sugg["rows"], near[:, m])
        assert sugg["probs"].shape == (near[:, m].sum(), SPEC.n_actions)
    dense = make(CONFIG, ids=(1,))[1]
    rollout({1: dense}, np.random.default_rng(12))
    dense.begin_update()
    assert "rows" not in dense.outgoing(0).broadcast[Kind.DIST]


def test_a_sparse_message_without_a_needed_row_is_a_gap() -> None:
    learners = make(SPARSE, ids=(0,))
    rollout(learners, np.random.default_rng(13))
    zero = learners[0]  # one candidate: 1
    zero.begin_update()
    near = zero._current().masks.numpy()[:, 0] > 0
    assert near.sum() >= 2
    short = near.copy()
    short[np.flatnonzero(near)[0]] = False  # 1 leaves out one row where it is our neighbour
    A = SPEC.n_actions

    def body(marked: np.ndarray) -> dict:
        n = int(marked.sum())
        return {"probs": np.full((n, A), 1 / A, np.float32), "actions": np.zeros(n, np.int64),
                "behaviour": np.full(n, 1 / A, np.float32), "rows": marked}

    zero.update_step(0, {1: {Kind.DIST: body(near), Kind.SUGG: {"to": 0, **body(near)}}})
    assert zero._current().gaps == 0
    zero.update_step(1, {1: {Kind.DIST: body(short), Kind.SUGG: {"to": 0, **body(near)}}})
    assert zero._current().gaps == 1


def test_no_exchange_with_a_neighbour_never_met_in_the_batch() -> None:
    learners = make(SPARSE, ids=(1,))
    one = learners[1]
    data = np.random.default_rng(14)
    for t in range(T):  # candidate 0 is never near; candidate 2 always
        one.act(data.standard_normal((B, 3)).astype(np.float32), np.array([[False, True]] * B))
        one.record(np.zeros(B, np.float32), t == T - 1, False, data.standard_normal((B, 3)).astype(np.float32))
    one.begin_update()
    assert set(one.expected(0)) == {2} and set(one.outgoing(0).addressed) == {2}


def test_shared_suggester_is_one_trunk_with_a_head_per_neighbour() -> None:
    shared, dense = make(SHARED, ids=(1,))[1], make(CONFIG, ids=(1,))[1]
    width, A = CONFIG.hidden[-1], SPEC.n_actions
    assert shared.suggesters.weight.shape == (2, width, A) and shared.suggesters.bias.shape == (2, A)
    trunk = sum(p.numel() for p in shared.suggesters.trunk.parameters())
    per_net = sum(p.numel() for p in dense.suggesters["0"].parameters())
    assert per_net == trunk + width * A + A  # each j's pi_ij has the dense net's shape, its trunk shared
    obs = torch.randn(5, 3)
    heads = shared.suggesters.heads(shared.suggesters.features(obs))
    by_hand = shared.suggesters.features(obs) @ shared.suggesters.weight[1] + shared.suggesters.bias[1]
    torch.testing.assert_close(heads[:, 1], by_hand)  # candidate 2 is column 1
    learners = make(SHARED)
    before = {i: l.flat_parameters().copy() for i, l in learners.items()}
    stats = train(learners, 2, np.random.default_rng(15))
    assert all(np.isfinite(s[i]["penalty"]) and s[i]["comm_gaps"] == 0 for s in stats for i in learners)
    assert all((learners[i].flat_parameters() != before[i]).any() for i in learners)


def test_suggester_is_ss_only_and_named_on_the_command_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="suggester"):
        resolve(None, {"algo": "vs", "suggester": "sparse"})
    with pytest.raises(ValueError, match="suggester must be one of"):
        resolve(None, {"suggester": "tiny"})
    import subprocess
    bad = subprocess.run([script("ss-sim"), "--suggester", "tiny", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "'tiny' is not one of 'dense', 'sparse', 'shared'" in bad.stderr


def test_a_checkpoint_of_a_shared_learner_loads_into_one() -> None:
    a = make(SHARED, ids=(1,))[1]
    b = SSLearner(1, SPEC, SPEC.candidates[1], dataclasses.replace(SHARED, seed=99))
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.flat_parameters(), b.flat_parameters())
    with pytest.raises(RuntimeError):  # a dense checkpoint is not a shared one
        b.load_state_dict(make(CONFIG, ids=(1,))[1].state_dict())


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("suggester", ["sparse", "shared"])
def test_cluster_matches_sim_with_sparse_and_shared_suggesters(tmp_path: Path, suggester: str) -> None:
    opts = ["--env", "predation", "--agents", "4", "--episodes", "8", "--batch", "2", "--seed", "5",
            "--suggester", suggester]
    sim, cl, _ = run_sim_and_cluster(tmp_path, opts)
    for name in ("metrics.csv", *(f"agents/{i}/train.csv" for i in range(4))):
        assert (cl / name).read_bytes() == (sim / name).read_bytes(), name
    nets = [torch.load(run / "agents/0/checkpoint.pt", weights_only=False)["learner"]["suggesters"] for run in (cl, sim)]
    torch.testing.assert_close(*nets, rtol=0, atol=0)

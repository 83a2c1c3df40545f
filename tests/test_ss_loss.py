"""The SS loss (eqs. 13-16, 18) against independent computations."""

import numpy as np
import pytest
import torch

from agent.ss_loss import NeighbourTerms, indicator, ss_loss

torch.set_num_threads(1)

R, A = 6, 3


def leaf(*shape: int, seed: int) -> torch.Tensor:
    """Random logits that collect gradients."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).requires_grad_()


def actions(seed: int) -> torch.Tensor:
    return torch.randint(0, A, (R,), generator=torch.Generator().manual_seed(seed))


def probs(seed: int) -> torch.Tensor:
    return torch.softmax(torch.randn(R, A, generator=torch.Generator().manual_seed(seed)), dim=1)


ADV = torch.tensor([1.5, -0.7, 2.0, -1.2, 0.3, -2.5])
VALUES = torch.tensor([0.1, 0.4, -0.2, 1.0, 0.0, 0.5])
RETURNS = torch.tensor([0.3, -0.1, 0.2, 0.9, 1.0, 0.0])


def loss(logits_ii, a_i, beh_i, neighbours, rho=2.0, kappa=None, adv=ADV, values=VALUES):
    return ss_loss(
        logp_ii=torch.log_softmax(logits_ii, dim=1), actions=a_i, behaviour=beh_i,
        advantages=adv, kappa=adv.abs().mean() if kappa is None else kappa, rho=rho,
        neighbours=neighbours, clip_eps=0.2, values=values, returns=RETURNS, value_coef=0.5, valid=torch.ones(R),
    )


def neighbour(logits_ij, a_j, beh_j, P_jj, S_ji, mask=None) -> NeighbourTerms:
    """j's terms at the rows where `mask` (default: every row) says j is a neighbour, as the learner
    hands them over: every tensor taken at those rows."""
    rows = torch.nonzero(torch.ones(R) if mask is None else mask > 0).squeeze(1)
    return NeighbourTerms(
        rows=rows, logp_ij=torch.log_softmax(logits_ij, dim=1)[rows], actions=a_j[rows], behaviour=beh_j[rows],
        probs=P_jj[rows], suggestion=S_ji[rows],
    )


def grads(terms, *tensors):
    return torch.autograd.grad(terms.total, tensors)


def test_without_neighbours_the_loss_is_ppo_clip_plus_value_loss():
    logits = leaf(R, A, seed=0)
    a_i = actions(1)
    beh = probs(2)[torch.arange(R), a_i]  # an older policy: ratios spread beyond 1 +- 0.2
    terms = loss(logits, a_i, beh, [], rho=10.0)

    # independent float64 numpy computation of PPO-clip and the critic loss
    p = logits.detach().double().softmax(1).numpy()
    ratio = p[np.arange(R), a_i.numpy()] / beh.double().numpy()
    adv = ADV.double().numpy()
    ppo = np.minimum(ratio * adv, np.clip(ratio, 0.8, 1.2) * adv).mean()
    value_loss = ((VALUES.double().numpy() - RETURNS.double().numpy()) ** 2).mean()
    assert np.any(np.abs(ratio - 1) > 0.2)  # the clip is exercised
    assert terms.total.item() == pytest.approx(-ppo + 0.5 * value_loss, abs=1e-6)
    assert terms.penalty == 0.0
    assert terms.suggestion_count == 0


def test_suggestions_equal_to_policies_give_zero_penalty_and_zero_penalty_gradient():
    logits_ii, logits_1, logits_2 = leaf(R, A, seed=0), leaf(R, A, seed=1), leaf(R, A, seed=2)
    a_i = actions(3)
    beh_i = probs(4)[torch.arange(R), a_i]
    pi_ii = torch.log_softmax(logits_ii.detach(), 1).exp()  # exactly what ss_loss computes

    def nbrs():
        return [neighbour(lg, actions(5 + s), probs(7 + s)[torch.arange(R), actions(5 + s)],
                          P_jj=torch.log_softmax(lg.detach(), 1).exp(), S_ji=pi_ii)
                for s, lg in enumerate((logits_1, logits_2))]

    with_pen = loss(logits_ii, a_i, beh_i, nbrs(), rho=10.0)
    without = loss(logits_ii, a_i, beh_i, nbrs(), rho=0.0)
    assert with_pen.penalty == 0.0
    assert with_pen.suggestion_sq_sum == pytest.approx(0.0, abs=1e-12)
    for g_pen, g_none in zip(grads(with_pen, logits_ii, logits_1, logits_2),
                             grads(without, logits_ii, logits_1, logits_2)):
        assert g_pen.abs().sum() > 0  # the surrogate still moves every net
        torch.testing.assert_close(g_pen, g_none, rtol=0, atol=1e-7)


def test_indicator_truth_table():
    pi_a = torch.tensor([0.6, 0.4, 0.6, 0.4, 0.5, 0.5, 0.6, 0.4])
    ref_a = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0, 1.0, -1.0, 0.0, 0.0])
    # ratio:            >1   <1    >1    <1    =1    =1    >1   <1
    expected = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert indicator(pi_a, ref_a, adv).tolist() == expected


@pytest.mark.parametrize("adv, P_row, active", [
    (1.0, [0.4, 0.3, 0.3], True),    # A > 0, pi_ij(a_j)/P_jj(a_j) > 1: gap widens -> penalised
    (1.0, [0.6, 0.2, 0.2], False),   # A > 0, ratio < 1
    (-1.0, [0.4, 0.3, 0.3], False),  # A < 0, ratio > 1
    (-1.0, [0.6, 0.2, 0.2], True),   # A < 0, ratio < 1
])
def test_penalty_applies_only_in_the_indicator_set(adv, P_row, active):
    pi_ij = torch.tensor([[0.5, 0.3, 0.2]])
    P_jj = torch.tensor([P_row])
    logits_ii = leaf(1, A, seed=0)
    a = torch.tensor([0])
    nb = NeighbourTerms(rows=torch.tensor([0]), logp_ij=pi_ij.log(), actions=a, behaviour=torch.tensor([0.5]),
                        probs=P_jj, suggestion=logits_ii.detach().softmax(1))
    terms = ss_loss(torch.log_softmax(logits_ii, 1), a, torch.tensor([0.5]), torch.tensor([adv]),
                    kappa=0.7, rho=3.0, neighbours=[nb], clip_eps=0.2, values=torch.zeros(1),
                    returns=torch.zeros(1), value_coef=0.5, valid=torch.ones(1))
    gap = float(((pi_ij - P_jj) ** 2).sum())
    assert terms.penalty == pytest.approx(0.7 * 3.0 * gap if active else 0.0, abs=1e-7)


def test_no_gradient_reaches_received_tensors():
    logits_ii, logits_ij = leaf(R, A, seed=0), leaf(R, A, seed=1)
    a_i, a_j = actions(2), actions(3)
    received = {
        "beh_j": probs(4)[torch.arange(R), a_j].clone().requires_grad_(),
        "P_jj": probs(5).clone().requires_grad_(),
        "S_ji": probs(6).clone().requires_grad_(),
        "adv": ADV.clone().requires_grad_(),
        "kappa": torch.tensor(0.9, requires_grad=True),
    }
    nb = neighbour(logits_ij, a_j, received["beh_j"], received["P_jj"], received["S_ji"],
                   torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 1.0]))
    terms = loss(logits_ii, a_i, probs(7)[torch.arange(R), a_i], [nb], rho=5.0,
                 kappa=received["kappa"], adv=received["adv"])
    assert terms.penalty > 0
    terms.total.backward()
    assert logits_ii.grad is not None and logits_ij.grad is not None
    for name, t in received.items():
        assert t.grad is None, name


def test_penalty_gradient_moves_suggestion_and_policy_toward_the_received_ones():
    logits_ii, logits_ij = leaf(R, A, seed=0), leaf(R, A, seed=1)
    a_i, a_j = actions(2), actions(3)
    P_jj, S_ji = probs(4), probs(5)
    adv = torch.ones(R)  # A > 0 everywhere ...
    # ... and the references put less mass on the taken actions: every row is in X^ij and X^ii
    P_jj = torch.softmax(torch.log(P_jj) - 5 * torch.nn.functional.one_hot(a_j, A), dim=1)
    S_ji = torch.softmax(torch.log(S_ji) - 5 * torch.nn.functional.one_hot(a_i, A), dim=1)
    beh_i, beh_j = probs(6)[torch.arange(R), a_i], probs(7)[torch.arange(R), a_j]

    def total_grads(rho):
        nb = neighbour(logits_ij, a_j, beh_j, P_jj, S_ji)
        return grads(loss(logits_ii, a_i, beh_i, [nb], rho=rho, adv=adv), logits_ii, logits_ij)

    (g_ii_pen, g_ij_pen) = (g1 - g0 for g1, g0 in zip(total_grads(1.0), total_grads(0.0)))

    def dist(logits, ref):
        return float(((logits.softmax(1) - ref) ** 2).sum())

    lr = 0.5
    assert dist(logits_ij.detach() - lr * g_ij_pen, P_jj) < dist(logits_ij.detach(), P_jj)
    assert dist(logits_ii.detach() - lr * g_ii_pen, S_ji) < dist(logits_ii.detach(), S_ji)


def test_xi_n_drops_masked_and_missing_neighbours():
    logits_ii, logits_1, logits_2 = leaf(R, A, seed=0), leaf(R, A, seed=1), leaf(R, A, seed=2)
    a_i, a_1, a_2 = actions(3), actions(4), actions(5)
    beh_i = torch.log_softmax(logits_ii.detach(), 1).exp()[torch.arange(R), a_i]  # xi_i = 1
    beh_1 = probs(6)[torch.arange(R), a_1]
    beh_2 = probs(7)[torch.arange(R), a_2]
    mask_2 = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 1.0])
    beh_2 = torch.where(mask_2 > 0, beh_2, torch.zeros(R))  # garbage where j is not a neighbour

    def n1():
        return neighbour(logits_1, a_1, beh_1, probs(8), probs(9))

    n2 = neighbour(logits_2, a_2, beh_2, probs(10), probs(11), mask_2)
    terms = loss(logits_ii, a_i, beh_i, [n1(), n2], rho=0.0)

    p1 = logits_1.detach().double().softmax(1).numpy()[np.arange(R), a_1.numpy()]
    p2 = logits_2.detach().double().softmax(1).numpy()[np.arange(R), a_2.numpy()]
    r1 = p1 / beh_1.double().numpy()
    r2 = np.where(mask_2.numpy() > 0, p2 / np.maximum(beh_2.double().numpy(), 1e-30), 1.0)
    expected = float(np.mean(r1 * r2 * ADV.double().numpy()))
    assert terms.surrogate == pytest.approx(expected, rel=1e-5)
    assert all(torch.isfinite(g).all() for g in grads(terms, logits_ii, logits_1, logits_2))

    # a neighbour masked out at every step is the same as a missing one (communication gap)
    for rho in (0.0, 4.0):
        off = neighbour(logits_2, a_2, beh_2, probs(10), probs(11), torch.zeros(R))
        t_off = loss(logits_ii, a_i, beh_i, [n1(), off], rho=rho)
        t_gap = loss(logits_ii, a_i, beh_i, [n1()], rho=rho)
        assert t_off.total.item() == pytest.approx(t_gap.total.item(), abs=1e-7)
        pairs = zip(grads(t_off, logits_ii, logits_1), grads(t_gap, logits_ii, logits_1))
        for g_off, g_gap in pairs:
            torch.testing.assert_close(g_off, g_gap, rtol=0, atol=1e-7)


def test_terms_grouped_one_neighbour_per_row_are_the_same_loss() -> None:
    """--suggester sparse/shared hand the loss each row's L-th neighbour per term instead of a term per
    neighbour: the same products and sums, so the same loss and gradients (to float rounding)."""
    logits_ii = leaf(R, A, seed=20)
    logits = [leaf(R, A, seed=21 + m) for m in range(3)]
    a_i, beh_i = actions(30), probs(31)[torch.arange(R), actions(30)]
    masks = [torch.tensor(m, dtype=torch.float32) for m in ([1, 1, 0, 1, 0, 1], [0, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 1])]

    def per_neighbour() -> list[NeighbourTerms]:
        return [neighbour(logits[m], actions(40 + m), probs(50 + m)[torch.arange(R), actions(40 + m)],
                          probs(60 + m), probs(70 + m), masks[m]) for m in range(3)]

    pairs = {key: torch.cat([getattr(n, key) for n in per_neighbour()])
             for key in ("rows", "logp_ij", "actions", "behaviour", "probs", "suggestion")}
    rank = torch.zeros_like(pairs["rows"])
    seen: dict[int, int] = {}
    for p, r in enumerate(pairs["rows"].tolist()):
        rank[p], seen[r] = seen.get(r, 0), seen.get(r, 0) + 1
    layered = [NeighbourTerms(**{key: value[rank == layer] for key, value in pairs.items()})
               for layer in range(int(rank.max()) + 1)]
    assert len(layered) == 3 and len(layered[0].rows) == R - 1  # row 4 has no neighbour
    a, b = loss(logits_ii, a_i, beh_i, per_neighbour()), loss(logits_ii, a_i, beh_i, layered)
    assert b.total.item() == pytest.approx(a.total.item(), rel=1e-6)
    assert (b.suggestion_count, b.penalty) == (a.suggestion_count, pytest.approx(a.penalty, rel=1e-6))
    for g_a, g_b in zip(grads(a, logits_ii, *logits), grads(b, logits_ii, *logits)):
        torch.testing.assert_close(g_b, g_a, rtol=1e-5, atol=1e-7)

"""The Suggestion Sharing loss of agent i (paper eqs. 13-16 and 18), on R rows of its rollout.

Pure tensors in, loss out. Everything received from a neighbour j (its actions a_j, behaviour
probabilities, current distribution P_jj and suggestion S_ji) is a constant: it is detached here.
With no neighbours the loss is exactly PPO-clip plus the critic loss. Every expectation is a mean over
the rows the agent played (`valid`); padded rows after an episode's end weigh nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class NeighbourTerms:
    """What agent i has about its neighbours in this round at n distinct rows of its rollout (`rows`), one
    neighbour j per row: the rows where j is i's neighbour and i played (a term per j; or, grouped, each
    row's L-th neighbour). A row no term names has no neighbour there: the factor 1, no penalty."""

    rows: torch.Tensor  # [n] int64, distinct: those rows of i's rollout
    logp_ij: torch.Tensor  # [n, A_j] log pi_ij(.|o_i): i's suggestion for j (grad to theta_ij)
    actions: torch.Tensor  # [n] int64 a_j, received
    behaviour: torch.Tensor  # [n] pi_jj_old(a_j|o_j), received
    probs: torch.Tensor  # [n, A_j] P_jj = pi_jj(.|o_j), received this round
    suggestion: torch.Tensor  # [n, A_i] S_ji = pi_ji(.|o_j), received this round


@dataclass(frozen=True)
class LossTerms:
    """The loss to minimise and detached statistics of its parts."""

    total: torch.Tensor  # -mean(surr - pen) + value_coef * critic loss
    surrogate: float  # mean of the dual-clipped surrogate
    penalty: float  # mean of the suggestion penalties
    value_loss: float  # eq. 18
    entropy: float  # mean entropy of pi_ii
    suggestion_sq_sum: float  # sum over active (row, j) of mean_a (pi_ii - S_ji)^2 (paper Fig. 5)
    suggestion_count: int  # number of active (row, j) pairs in that sum


def masked_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The mean of x [R] over the rows where valid [R] (float 0/1) is 1."""
    return (x * valid).sum() / valid.sum().clamp(min=1.0)


def taken(x: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """x[r, actions[r]] for x [R, A] and actions [R]."""
    return x.gather(1, actions.unsqueeze(1)).squeeze(1)


def indicator(pi_a: torch.Tensor, ref_a: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """Eqs. 14-15: 1.0 where (pi(a)/ref(a) - 1) * A >= 0 (the update would widen the gap), else 0.0.

    Written (pi(a) - ref(a)) * A >= 0, i.e. multiplied through by ref(a) > 0, so that it stays
    finite when ref(a) = 0.
    """
    return ((pi_a - ref_a) * A >= 0).to(A.dtype)


def ss_loss(
    logp_ii: torch.Tensor,
    actions: torch.Tensor,
    behaviour: torch.Tensor,
    advantages: torch.Tensor,
    kappa: torch.Tensor | float,
    rho: float,
    neighbours: Sequence[NeighbourTerms],
    clip_eps: float,
    values: torch.Tensor,
    returns: torch.Tensor,
    value_coef: float,
    valid: torch.Tensor,
) -> LossTerms:
    """Eq. 16 (maximised, so negated) plus value_coef * eq. 18.

    logp_ii [R, A_i] log pi_ii(.|o_i) (grad to theta_ii); actions a_i [R]; behaviour
    pi_ii_old(a_i|o_i) [R]; advantages A_i [R] and kappa_i = mean |A_i| (constants); values
    V_i(o_i) [R] (grad to phi_i) and critic targets G_i [R]; valid [R] float loss mask.
    """
    A = advantages.detach()
    kappa = torch.as_tensor(kappa).detach()
    pi_ii = logp_ii.exp()
    pi_ii_a = taken(pi_ii, actions)

    # eq. 13: xi_i = pi_ii(a_i|o_i) / pi_ii_old(a_i|o_i)                      (clipped below)
    xi_i = pi_ii_a / behaviour.detach()
    # eq. 13: xi_N = prod_j pi_ij(a_j|o_i) / pi_jj_old(a_j|o_j)               (unclipped);
    # a neighbour contributes the factor 1 at the rows where it is not one.
    one = torch.ones_like(A)
    xi_n = one
    penalty = torch.zeros_like(A)
    sq_sum, count = 0.0, 0
    for n in neighbours:
        rows, a_j, P_jj, S_ji = n.rows, n.actions.detach(), n.probs.detach(), n.suggestion.detach()
        A_n, pi_ii_n = A[rows], pi_ii[rows]
        pi_ij = n.logp_ij.exp()
        pi_ij_a = taken(pi_ij, a_j)
        xi_n = xi_n * one.index_copy(0, rows, pi_ij_a / n.behaviour.detach())

        # eqs. 14-15, recomputed at every step without grad
        with torch.no_grad():
            I_ij = indicator(pi_ij_a, taken(P_jj, a_j), A_n)
            I_ii = indicator(pi_ii_a[rows], taken(S_ji, actions[rows]), A_n)
            sq_sum += float(((pi_ii_n - S_ji) ** 2).mean(dim=1).sum())
            count += len(rows)

        # eq. 16 penalties: ||pi_ij(.|o_i) - pi_jj||^2 and ||pi_ii(.|o_i) - pi_ji||^2
        penalty = penalty.index_add(
            0, rows, I_ij * ((pi_ij - P_jj) ** 2).sum(dim=1) + I_ii * ((pi_ii_n - S_ji) ** 2).sum(dim=1))
    penalty = kappa * rho * penalty

    # eq. 16: min(xi_i xi_N A, clip(xi_i, 1-eps, 1+eps) xi_N A) = xi_N min(...) as xi_N > 0
    surrogate = xi_n * torch.min(xi_i * A, torch.clamp(xi_i, 1 - clip_eps, 1 + clip_eps) * A)
    valid = valid.detach()
    objective = masked_mean(surrogate - penalty, valid)
    # eq. 18: L_V = E[(V_i(s_t) - G_t)^2]
    value_loss = masked_mean((values - returns.detach()) ** 2, valid)
    entropy = masked_mean(-(pi_ii * logp_ii).sum(dim=1), valid)
    return LossTerms(
        total=-objective + value_coef * value_loss,
        surrogate=float(masked_mean(surrogate.detach(), valid)),
        penalty=float(masked_mean(penalty.detach(), valid)),
        value_loss=float(value_loss.detach()),
        entropy=float(entropy.detach()),
        suggestion_sq_sum=sq_sum,
        suggestion_count=count,
    )

"""GAE (eq. 17) and critic targets (eq. 18) against hand-computed values."""

import numpy as np
import pytest
import torch

from agent.returns import gae, team_flags, valid_steps
from agent.ss_loss import ss_loss

torch.set_num_threads(1)


def test_gae_hand_computed_with_truncation_and_termination():
    # gamma = lam = 0.5. Column 0: time limit after t=1 (bootstrap with V(o') = 8, not V(o_2)),
    # true termination after t=3. Column 1: no flags, the data ends after t=3 (bootstrap V = 3).
    rewards = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]])
    values = torch.tensor([[0.5, 0.5], [1.0, 1.0], [1.5, 1.5], [2.0, 2.0]])
    next_values = torch.tensor([[1.0, 1.0], [8.0, 1.5], [2.0, 2.0], [3.0, 3.0]])
    truncated = torch.tensor([[False, False], [True, False], [False, False], [False, False]])
    terminated = torch.tensor([[False, False], [False, False], [False, False], [True, False]])

    adv, ret = gae(rewards, values, next_values, terminated, truncated, gamma=0.5, lam=0.5)

    # column 0: delta = [1, 5, 2.5, 2]; A_3 = 2; A_2 = 2.5 + .25 * 2; A_1 = 5 (boundary);
    #   A_0 = 1 + .25 * 5
    # G_3 = 4; G_2 = 3 + .5 * 4; G_1 = 2 + .5 * 8 (bootstrap); G_0 = 1 + .5 * 6
    # column 1: delta = [1, 1.75, 2.5, 3.5]; A_t = delta_t + .25 A_{t+1};
    #   G_3 = 4 + .5 * 3, G_t = r_t + .5 G_{t+1}
    expected_adv = [[2.25, 1.6484375], [5.0, 2.59375], [3.0, 3.375], [2.0, 3.5]]
    expected_ret = [[4.0, 3.4375], [6.0, 4.875], [5.0, 5.75], [4.0, 5.5]]
    np.testing.assert_allclose(adv.numpy(), expected_adv, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ret.numpy(), expected_ret, rtol=0, atol=1e-6)


def test_lambda_one_advantage_plus_value_is_the_bootstrapped_return():
    gen = torch.Generator().manual_seed(0)
    T, B = 6, 3
    rewards = torch.randn(T, B, generator=gen)
    values = torch.randn(T, B, generator=gen)
    next_values = torch.cat([values[1:], torch.randn(1, B, generator=gen)])
    flags = torch.zeros(T, B, dtype=torch.bool)
    flags[-1] = True
    adv, ret = gae(rewards, values, next_values, torch.zeros_like(flags), flags, gamma=0.9, lam=1.0)
    np.testing.assert_allclose((adv + values).numpy(), ret.numpy(), rtol=0, atol=1e-5)
    # and the return is sum_l gamma^l r_{t+l} + gamma^(T-t) V(o_T), computed directly
    discounts = 0.9 ** torch.arange(T, dtype=torch.float32)
    direct = (discounts[:, None] * rewards).sum(0) + 0.9**T * next_values[-1]
    np.testing.assert_allclose(ret[0].numpy(), direct.numpy(), rtol=0, atol=1e-5)


def test_fixed_horizon_end_of_task_bootstraps_nothing():
    """Our worlds: T = 3 ends the task (terminated at t = 2). The target is the discounted return to the
    end, eq. 18, whatever V(o_T) is: G = [1 + .5 * 2 + .25 * 4, 2 + .5 * 4, 4] = [3, 4, 4]."""
    rewards = torch.tensor([[1.0], [2.0], [4.0]])
    values = torch.tensor([[1.0], [2.0], [3.0]])
    ends = torch.tensor([[False], [False], [True]])
    for v_T in (0.0, 100.0):
        next_values = torch.tensor([[2.0], [3.0], [v_T]])
        adv, ret = gae(rewards, values, next_values, ends, torch.zeros_like(ends), gamma=0.5, lam=1.0)
        np.testing.assert_allclose(ret[:, 0].numpy(), [3.0, 4.0, 4.0], rtol=0, atol=1e-6)
        np.testing.assert_allclose(adv[:, 0].numpy(), [2.0, 2.0, 1.0], rtol=0, atol=1e-6)  # G - V at lam 1
    # the same horizon as a truncation of a longer task bootstraps: G_2 = 4 + .5 * 100
    next_values = torch.tensor([[2.0], [3.0], [100.0]])
    _, ret = gae(rewards, values, next_values, torch.zeros_like(ends), ends, gamma=0.5, lam=1.0)
    np.testing.assert_allclose(ret[:, 0].numpy(), [15.5, 29.0, 54.0], rtol=0, atol=1e-6)


def test_valid_steps_masks_the_padding_after_an_end():
    # column 0 terminated with t = 1, column 1 truncated with t = 2, column 2 ends at T only
    terminated = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 1]], bool)
    truncated = np.array([[0, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 0]], bool)
    np.testing.assert_array_equal(valid_steps(terminated, truncated),
                                  [[1, 1, 1], [1, 1, 1], [0, 1, 1], [0, 0, 1]])


def test_team_episode_ends_with_its_last_agent():
    # agent 0 terminates with t = 0, agent 1 with t = 2 (copy 0); in copy 1 both run to T = 3, where
    # agent 1 is truncated: the team's episode is truncated there.
    term0 = np.array([[1, 0], [0, 0], [0, 1]], bool)
    trunc0 = np.zeros((3, 2), bool)
    term1 = np.array([[0, 0], [0, 0], [1, 0]], bool)
    trunc1 = np.array([[0, 0], [0, 0], [0, 1]], bool)
    terminated, truncated = team_flags([term0, term1], [trunc0, trunc1])
    np.testing.assert_array_equal(terminated, [[0, 0], [0, 0], [1, 0]])
    np.testing.assert_array_equal(truncated, [[0, 0], [0, 0], [0, 1]])


def test_padded_rows_weigh_nothing_in_the_loss():
    """ss_loss on R rows with the last two masked equals ss_loss on the first R - 2 rows alone."""
    gen = torch.Generator().manual_seed(3)
    R, A = 6, 3
    logits = torch.randn(R, A, generator=gen)
    args = dict(actions=torch.randint(0, A, (R,), generator=gen), behaviour=torch.rand(R, generator=gen) + 0.1,
                advantages=torch.randn(R, generator=gen), values=torch.randn(R, generator=gen),
                returns=torch.randn(R, generator=gen))
    valid = torch.tensor([1.0, 1, 1, 1, 0, 0])
    full = ss_loss(logp_ii=torch.log_softmax(logits, 1), kappa=1.0, rho=0.0, neighbours=(), clip_eps=0.2,
                   value_coef=0.5, valid=valid, **args)
    cut = ss_loss(logp_ii=torch.log_softmax(logits[:4], 1), kappa=1.0, rho=0.0, neighbours=(), clip_eps=0.2,
                  value_coef=0.5, valid=torch.ones(4), **{k: v[:4] for k, v in args.items()})
    assert abs(float(full.total) - float(cut.total)) < 1e-6
    assert (full.value_loss, full.entropy) == pytest.approx((cut.value_loss, cut.entropy), abs=1e-6)


def test_a_step_played_with_the_default_action_is_masked() -> None:
    from agent.buffer import RolloutBuffer

    buf = RolloutBuffer()
    for t in range(3):
        buf.add_action(np.zeros((2, 1), np.float32), np.zeros((2, 0), bool), np.zeros(2, np.int64),
                       np.full(2, 0.5, np.float32))
        buf.add_outcome(np.ones(2), np.full(2, t == 2), np.zeros(2, bool), np.zeros((2, 1), np.float32),
                        executed=t != 1)
    np.testing.assert_array_equal(buf.rollout().valid, [[True, True], [False, False], [True, True]])

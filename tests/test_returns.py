"""GAE (eq. 17) and critic targets (eq. 18) against hand-computed values."""

import numpy as np
import torch

from agent.returns import gae

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

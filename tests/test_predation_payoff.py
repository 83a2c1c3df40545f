"""bench/predation_payoff.py: the exact payoff analysis agrees with the world and with hand values."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from envserver.worlds import make_world

spec = importlib.util.spec_from_file_location("predation_payoff", Path(__file__).parents[1] / "bench/predation_payoff.py")
payoff = importlib.util.module_from_spec(spec)
spec.loader.exec_module(payoff)


def test_payoff_is_the_worlds() -> None:
    world = make_world("predation", 8, 1, 0)
    for coop in np.random.default_rng(0).random((50, 8)) < 0.6:
        np.testing.assert_array_equal(payoff.rewards(coop), world._dilemma_rewards(coop[:, None])[:, 0])


def test_hand_values_at_n8() -> None:
    actions, table = payoff.joint_table(8)
    assert payoff.expected(np.zeros(8), actions, table).mean() == -15.0
    assert payoff.expected(np.ones(8), actions, table).mean() == -1.0
    # uniform agents: all C and all D each w.p. 1/256; otherwise each cooperator pays 16:
    # E[r_i] = .5 * (1/128 * -1 + 127/128 * -16) + .5 * (1/128 * -15) = -8.0
    assert payoff.expected(np.full(8, 0.5), actions, table).mean() == pytest.approx(-8.0)
    lo, hi = payoff.defection_interval(8, actions, table)
    assert 0.2 < lo < 0.3 and 0.74 < hi < 0.76
    assert payoff.defection_interval(2, *payoff.joint_table(2)) is None  # 2 agents: always toward cooperation

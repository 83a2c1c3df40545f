"""Every algorithm's contract with the runtime, in one table: what its agents may send besides lockstep and
control (and which of that carries private fields), whether they exchange with neighbours, whether they
exchange with every neighbour each round (so --partners, paper A.4, does not apply), and whether a central
learner process runs. Everything outside the learners asks this table, never the algorithm's name. The
learners: agent/algorithms/ss.py (ss, and ippo: ss without neighbours) and agent/algorithms/<name>.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.wire.messages import Kind


@dataclass(frozen=True)
class Algorithm:
    """One algorithm as the runtime sees it."""

    name: str
    summary: str  # one phrase, for --help
    sends: frozenset[Kind] = frozenset()  # to its neighbours (or, CL, to the central learner)
    private: frozenset[Kind] = frozenset()  # of those, the kinds that carry private fields
    peers: bool = True  # exchanges with neighbours at all
    every_neighbour: bool = False  # consensus/averaging over all neighbours: no --partners
    central_learner: bool = False  # a central learner process gets every agent's rewards


ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (
    Algorithm("ss", "Suggestion Sharing: neighbours exchange action distributions and suggestions only",
              sends=frozenset({Kind.DIST, Kind.SUGG})),
    Algorithm("ippo", "independent PPO: shares nothing", peers=False),
    Algorithm("vs", "value sharing: neighbours exchange their advantages", sends=frozenset({Kind.ADV}),
              private=frozenset({Kind.ADV}), every_neighbour=True),
    Algorithm("vps", "critic-parameter consensus with the neighbours", sends=frozenset({Kind.CRITIC_PARAMS}),
              private=frozenset({Kind.CRITIC_PARAMS}), every_neighbour=True),
    # PS: its actions and behaviour in DIST (for the joint ratio), every policy copy in POLICY_PARAMS
    Algorithm("ps", "policy-parameter consensus with the neighbours", sends=frozenset({Kind.DIST, Kind.POLICY_PARAMS}),
              private=frozenset({Kind.POLICY_PARAMS}), every_neighbour=True),
    Algorithm("imr", "intrinsic moral reward: shares nothing, shapes its own reward", peers=False),
    # CL: its rewards and observations to the central learner, nothing to any peer
    Algorithm("cl", "a central critic on the sum of rewards, in its own process: every agent sends it its rewards",
              sends=frozenset({Kind.REWARD}), private=frozenset({Kind.REWARD}), peers=False, central_learner=True),
)}


def algorithm(name: str) -> Algorithm:
    """The algorithm called `name`; ValueError naming the choices otherwise."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algo {name!r}; choose one of {list(ALGORITHMS)}")
    return ALGORITHMS[name]

"""The baselines of DESIGN.md section 4 on the shared PPO core, and the choice of learner by `config.algo`."""

from __future__ import annotations

from agent.baselines.cl import CLLearner
from agent.baselines.imr import IMRLearner
from agent.baselines.ps import PSLearner
from agent.baselines.vps import VPSLearner
from agent.baselines.vs import VSLearner
from agent.learner import Learner
from agent.ppo import PPOLearner
from protocol.wire.algorithms import ALGORITHMS
from protocol.run.config import RunConfig
from protocol.wire.spec import WorldSpec

LEARNERS: dict[str, type[PPOLearner]] = {
    "ss": Learner,
    "ippo": Learner,  # SS with no neighbours
    "vs": VSLearner,
    "vps": VPSLearner,
    "ps": PSLearner,
    "imr": IMRLearner,
    "cl": CLLearner,
}


assert LEARNERS.keys() == ALGORITHMS.keys(), "every algorithm of protocol/wire/algorithms.py needs its learner here"


def make_learner(agent_id: int, spec: WorldSpec, candidates: tuple[int, ...], config: RunConfig) -> PPOLearner:
    """Agent `agent_id`'s learner for `config.algo`."""
    if config.algo not in LEARNERS:
        raise ValueError(f"no learner for algo {config.algo!r}; choose one of {sorted(LEARNERS)}")
    return LEARNERS[config.algo](agent_id, spec, candidates, config)

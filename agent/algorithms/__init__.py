"""One file per algorithm on the shared PPO core: SS (ss.py; ippo is SS without neighbours) and the baselines of
DESIGN.md section 4; each algorithm's wire contract is its row in protocol/wire/algorithms.py."""

from __future__ import annotations

from agent.algorithms.cl import CLLearner
from agent.algorithms.imr import IMRLearner
from agent.algorithms.ps import PSLearner
from agent.algorithms.vps import VPSLearner
from agent.algorithms.vs import VSLearner
from agent.algorithms.ss import SSLearner
from agent.ppo import PPOLearner
from protocol.wire.algorithms import ALGORITHMS
from protocol.run.config import RunConfig
from protocol.wire.spec import WorldSpec

LEARNERS: dict[str, type[PPOLearner]] = {
    "ss": SSLearner,
    "ippo": SSLearner,  # SS with no neighbours
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

"""Fault semantics in one process, through the in-memory transport: the agent loop (agent/driver.py) and the
round bookkeeping (agent/rounds.py) are the very code `ss-agent` runs over ZeroMQ, so a lost, repeated or
late round message, and an agent the world moved on without, behave here as they do in a cluster."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.algorithms import make_learner
from agent.driver import AgentDriver, Exchange, Reset, Step, TeamAdvantage, drive
from agent.env_link import Behind
from agent.exchange import Outgoing
from agent.records import load_checkpoints
from agent.rounds import MemoryNetwork
from coordinator.sim import Simulation
from envserver.observe import observation
from envserver.worlds import make_world
from protocol.run.config import RunConfig, resolve
from protocol.run.csvlog import read_rows
from protocol.wire.messages import Kind
from protocol.run.rundir import RunDir
from protocol.run.topology import project_mask, resolve_neighbors

UPDATES = 4


def config(**overrides: Any) -> RunConfig:
    return resolve(None, {"env": "predation", "agents": 3, "episodes": UPDATES * 2, "batch": 2, "seed": 5,
                          **overrides})


def run(tmp_path: Path, name: str, network: type[MemoryNetwork] = MemoryNetwork, **overrides: Any) -> Simulation:
    sim = Simulation(config(**overrides), tmp_path / name, network=network)
    sim.run(progress=False)
    return sim


def column(out: Path, agent: int, name: str) -> list[float]:
    return [float(row[name]) for row in read_rows(RunDir(out).train(agent))]


class LosesOneSuggestion(MemoryNetwork):
    """Agent 1's suggestion to agent 0 in round 4 (update 1, second round) never arrives."""

    def deliver(self, i: int, round_id: int, outgoing: dict[int, Outgoing]) -> list:
        return [m for m in super().deliver(i, round_id, outgoing)
                if not (i == 0 and round_id == 4 and m[0] == 1 and m[1] is Kind.SUGG)]


class RepeatsAndReplays(MemoryNetwork):
    """Every message arrives twice, and the previous round's messages arrive again after them."""

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.previous: dict[int, list] = {}

    def deliver(self, i: int, round_id: int, outgoing: dict[int, Outgoing]) -> list:
        fresh = super().deliver(i, round_id, outgoing)
        replayed = self.previous.get(i, [])
        self.previous[i] = fresh
        return fresh + fresh + replayed


class DelaysAgentTwo(MemoryNetwork):
    """Agent 2's messages of round 2 arrive one round late, in round 3."""

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.held: dict[int, list] = {}

    def deliver(self, i: int, round_id: int, outgoing: dict[int, Outgoing]) -> list:
        late = self.held.pop(i, [])
        now = []
        for message in super().deliver(i, round_id, outgoing):
            (self.held.setdefault(i, []) if round_id == 2 and message[0] == 2 else now).append(message)
        return now + late


def test_a_lost_suggestion_is_a_gap_for_its_addressee_alone(tmp_path: Path) -> None:
    clean = run(tmp_path, "clean", iterations=3)
    lossy = run(tmp_path, "lossy", LosesOneSuggestion, iterations=3)
    gaps = column(lossy.run_dir.root, 0, "comm_gaps")
    assert gaps[1] == 1 and sum(gaps) == 1  # update 2 (rounds 3-5) lost one partner's terms, once
    assert all(sum(column(lossy.run_dir.root, i, "comm_gaps")) == 0 for i in (1, 2))
    assert lossy.network.books[0].silent == set()  # neighbour 1 was back the next round
    # until the loss both runs are the same; agent 0 learnt differently from then on
    assert column(clean.run_dir.root, 0, "policy_loss")[0] == column(lossy.run_dir.root, 0, "policy_loss")[0]
    assert column(clean.run_dir.root, 0, "policy_loss")[1] != column(lossy.run_dir.root, 0, "policy_loss")[1]


def test_repeated_and_replayed_round_messages_are_dropped_and_change_nothing(tmp_path: Path) -> None:
    clean = run(tmp_path, "clean")
    noisy = run(tmp_path, "noisy", RepeatsAndReplays)
    assert (noisy.run_dir.metrics.read_bytes() == clean.run_dir.metrics.read_bytes())
    for i in range(3):
        assert RunDir(noisy.run_dir.root).train(i).read_bytes() == RunDir(clean.run_dir.root).train(i).read_bytes()
    assert all(book.inbox.dropped["stale"] > 0 for book in noisy.network.books.values())


def test_a_late_round_message_is_a_gap_then_dropped_as_stale(tmp_path: Path) -> None:
    late = run(tmp_path, "late", DelaysAgentTwo, iterations=3)
    # round 2 is the first update's last round: agent 2's neighbours miss it there, and drop it later
    for i in late.neighbors[2]:
        assert column(late.run_dir.root, i, "comm_gaps")[0] >= 1
        assert late.network.books[i].inbox.dropped["stale"] >= 1


class Solo:
    """Agent 0 of a 3-agent world, its requests answered in memory (the others play the default action);
    `behind` = (update, request type, join): the world moves on without it there."""

    def __init__(self, cfg: RunConfig, behind: tuple[int, type, int]):
        self.cfg = cfg
        self.world = make_world(cfg.env, cfg.agents, cfg.batch, cfg.seed)
        self.spec = self.world.spec
        self.neighbors = resolve_neighbors(cfg, self.spec)
        self.behind = behind
        self.asked: list[str] = []

    def answer(self, request: Any) -> Any:
        update = getattr(request, "episode", getattr(request, "update", None))
        when, kind, join = self.behind
        if isinstance(request, kind) and update == when and getattr(request, "step", 3) == 3:
            self.behind = (-1, type(None), 0)
            raise Behind(join, "moved on without agent 0")
        if isinstance(request, Reset):
            self.asked.append(f"reset {request.episode}")
            return self.obs(self.world.reset(), request.episode, 0)
        if isinstance(request, Step):
            actions = np.full((self.cfg.agents, self.cfg.batch), self.spec.default_action, dtype=np.int64)
            actions[0] = request.actions
            return self.obs(self.world.step(actions), request.episode, request.step)
        if isinstance(request, TeamAdvantage):
            return {"advantages": np.zeros(self.spec.horizon * self.cfg.batch, np.float32)}
        assert isinstance(request, Exchange)
        return {}  # nobody answers: every expected neighbour is a gap

    def obs(self, result: Any, episode: int, step: int) -> dict:
        mask = project_mask(self.spec.candidates[0], result.masks[0], self.neighbors[0])
        return observation(result, 0, episode, step, mask, False)


@pytest.mark.parametrize("algo, kind", [("ss", Step), ("ss", Reset), ("cl", TeamAdvantage)])
def test_an_agent_the_run_moved_on_without_rejoins_at_the_batch_named(tmp_path: Path, algo: str, kind: type) -> None:
    cfg = config(algo=algo, episodes=6 * 2, checkpoint_every=3)
    solo = Solo(cfg, behind=(1, kind, 3))  # during update 1 (its third step, or its REWARD): join update 3
    learner = make_learner(0, solo.spec, solo.neighbors[0], cfg)
    driver = AgentDriver(0, learner, cfg, solo.spec, RunDir(tmp_path), logging.getLogger("test"))
    drive(driver.run(0), solo.answer)
    rows = read_rows(RunDir(tmp_path).train(0))
    assert [int(r["update"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    missed = [all(math.isnan(float(r[c])) for c in ("policy_loss", "kappa")) for r in rows]
    assert missed == [False, True, True, False, False, False]  # updates 2 and 3 missed: nan rows
    assert sorted(load_checkpoints(RunDir(tmp_path).checkpoint(0))) == [3, 6]  # the one due while away too
    assert learner.updates == 6
    assert "reset 2" not in solo.asked and "reset 3" in solo.asked


def test_a_loop_resumed_at_its_last_update_ends_at_once(tmp_path: Path) -> None:
    cfg = config()
    solo = Solo(cfg, behind=(-1, type(None), 0))
    learner = make_learner(0, solo.spec, solo.neighbors[0], cfg)
    driver = AgentDriver(0, learner, cfg, solo.spec, RunDir(tmp_path), logging.getLogger("test"))
    drive(driver.run(cfg.updates), solo.answer)  # nothing left to do: no request, no error
    assert solo.asked == [] and read_rows(RunDir(tmp_path).train(0)) == []


def test_an_agent_whose_step_did_not_come_gets_the_default_action_counted_and_flagged(tmp_path: Path) -> None:
    """The world's loop (envserver/lockstep.py), answered in memory: agent 1's STEP 3 of batch 0 is missing."""
    from envserver.lockstep import Collect, EnvLoop, Observations
    from protocol.loops import advance

    cfg = config(episodes=2)
    world = make_world(cfg.env, cfg.agents, cfg.batch, cfg.seed)
    loop = EnvLoop(world, cfg, resolve_neighbors(cfg, world.spec), RunDir(tmp_path), logging.getLogger("test")).run(0)
    flagged = {}
    request = advance(loop, None)
    while request is not None:
        if isinstance(request, Observations):
            flagged[request.step] = {i: body["default_used"] for i, body in request.bodies.items()}
            request = advance(loop, None)
            continue
        assert isinstance(request, Collect)
        came = {i: np.ones(cfg.batch, np.int64) for i in range(cfg.agents) if (request.step, i) != (3, 1)}
        request = advance(loop, came)
    assert flagged[3] == {0: False, 1: True, 2: False} and not any(any(f.values()) for t, f in flagged.items() if t != 3)
    rows = read_rows(RunDir(tmp_path).metrics)
    assert len(rows) == 1 and int(rows[0]["missing_actions"]) == 1  # one agent-step missed

"""Audit cost: time per episode of one agent with full frame capture against hashes only.

    python bench/audit_bench.py [--updates 40] [--quick]

What is timed (in-process, NOT a cluster: with ~10 processes on 2 cores a cluster's per-update time
varies by more than the effect measured here): agent 0 of an `ss-sim` Simulation (predation, 8
agents, batch 16) is driven by the unchanged simulation loop, and everything agent 0's process
would do on its side is timed: its learner work (act + record for T steps, GAE, K rounds of
outgoing + Adam pass) and its sends through the real send choke point (`Outbox.send`: encode,
audit record, `send_multipart`) for the exact messages the agent process sends per episode batch:
RESET, T STEP, and per round one DIST plus one SUGG per neighbour. The sends go to a PUB socket
with no subscriber (the socket call is the same in both modes; only the audit record differs).
The other agents and the world run untimed. Updates alternate frames/hashes as ABBA so drift cancels.
Not included: receiving and decoding (identical in both modes) and waiting for other processes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zmq

from _timing import explain, median, predation, result
from agent.exchange import Incoming, Outgoing
from agent.learner import Learner
from coordinator.sim import Simulation
from protocol.audit import Outbox
from protocol.auditlog import AuditLog
from protocol.messages import Kind
from protocol.topics import dist_topic, sugg_topic

MODES = ("frames", "hashes")
ENDPOINT = "inproc://audit-bench"


class TimedAgent:
    """Agent `me`'s Learner, called by the simulation as the agent process calls it, with the process's
    sends after act() (RESET before the first, then STEP) and after outgoing(k) (DIST, SUGG per
    neighbour); accumulates the seconds spent in all of it, and separately in the sends."""

    def __init__(self, learner: Learner, neighbors: tuple[int, ...], outboxes: dict[str, Outbox],
                 sock: zmq.Socket, iterations: int):
        self.learner = learner
        self.neighbors = neighbors
        self.outboxes = outboxes
        self.sock = sock
        self.iterations = iterations
        self.mode = MODES[0]
        self.update = 0
        self.step = 0
        self.elapsed = 0.0
        self.sending = 0.0

    def _send(self, kind: Kind, body: dict, *, dest: str, topic: bytes | None = None,
              round: int | None = None, step: int | None = None) -> None:
        start = time.perf_counter()
        self.outboxes[self.mode].send(self.sock, kind, body, dest=dest, endpoint=ENDPOINT, topic=topic,
                                      round=round, step=step)
        self.sending += time.perf_counter() - start

    def act(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        if self.step == 0:  # agent/env_link.py: RESET opens every episode batch
            self._send(Kind.RESET, {"episode": self.update}, dest="envserver", step=0)
        actions = self.learner.act(obs, mask)
        self.step += 1
        self._send(Kind.STEP, {"episode": self.update, "actions": np.asarray(actions, dtype=np.int64)},
                   dest="envserver", step=self.step)
        self.elapsed += time.perf_counter() - start
        return actions

    def record(self, rewards: np.ndarray, truncated: bool, next_obs: np.ndarray) -> None:
        start = time.perf_counter()
        self.learner.record(rewards, truncated, next_obs)
        self.elapsed += time.perf_counter() - start

    def begin_update(self) -> None:
        start = time.perf_counter()
        self.learner.begin_update()
        self.elapsed += time.perf_counter() - start

    def outgoing(self, k: int) -> Outgoing:
        """agent/peer_link.py `exchange`: DIST on dist/i/, then SUGG on sugg/i/j/ for each neighbour j."""
        start = time.perf_counter()
        out = self.learner.outgoing(k)
        round_id = self.update * self.iterations + k
        body: dict[str, object] = {"probs": out.probs}
        if out.actions is not None:
            body.update(actions=out.actions, behaviour=out.behaviour)
        me = self.learner.agent_id
        self._send(Kind.DIST, body, dest=f"subscribers:dist/{me}/", topic=dist_topic(me), round=round_id)
        for j in self.neighbors:
            self._send(Kind.SUGG, {"to": j, "probs": out.suggestions[j]}, dest=f"agent:{j}",
                       topic=sugg_topic(me, j), round=round_id)
        self.elapsed += time.perf_counter() - start
        return out

    def update_step(self, k: int, received: dict[int, Incoming]) -> None:
        start = time.perf_counter()
        self.learner.update_step(k, received)
        self.elapsed += time.perf_counter() - start

    def end_update(self) -> dict[str, float]:
        start = time.perf_counter()
        stats = self.learner.end_update()
        self.elapsed += time.perf_counter() - start
        self.update += 1
        self.step = 0
        return stats

    def take(self) -> tuple[float, float]:
        """(total, sending) seconds since the last call, and reset both."""
        taken = (self.elapsed, self.sending)
        self.elapsed = self.sending = 0.0
        return taken


def abba(update: int) -> str:
    """frames, hashes, hashes, frames, ...: linear drift adds the same to both modes."""
    return MODES[0] if update % 4 in (0, 3) else MODES[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--updates", type=int, default=40, help="timed updates (half per mode), after 4 warm-ups")
    parser.add_argument("--quick", action="store_true", help="tiny settings for the smoke test")
    args = parser.parse_args()
    if args.quick:
        args.agents, args.batch, args.updates = 2, 2, 4
    torch.set_num_threads(1)
    warmup = 4
    config = predation(args.agents, args.batch, warmup + args.updates)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(ENDPOINT)
    times: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        sim = Simulation(config, Path(tmp) / "sim")
        logs = {mode: AuditLog(Path(tmp) / f"{mode}.audit.log", mode=mode) for mode in MODES}
        outboxes = {mode: Outbox("agent", config.algo, "bench", 0, log) for mode, log in logs.items()}
        agent = TimedAgent(sim.learners[0], sim.neighbors[0], outboxes, sock, config.iterations)
        sim.learners[0] = agent
        try:
            for update in range(warmup + args.updates):
                agent.mode = abba(update)
                sim.rollout((update + 1) * config.batch)
                sim.train()
                if update >= warmup:
                    times[agent.mode].append(agent.take())
                agent.take()
            sizes = {mode: log.path.stat().st_size / log.count for mode, log in logs.items()}
            messages = sum(log.count for log in logs.values()) // (warmup + args.updates)
        finally:
            for log in logs.values():
                log.close()
            sock.close()
            ctx.term()

    per_episode = {mode: median(t for t, _ in times[mode]) / config.batch for mode in MODES}
    sending = {mode: median(s for _, s in times[mode]) / config.batch for mode in MODES}
    explain(f"in-process: agent 0 of predation, {args.agents} agents, batch {args.batch}, algo {config.algo}, "
            f"K={config.iterations}; {messages} messages per episode batch; median of {len(times['frames'])} "
            f"updates per mode, ABBA-interleaved")
    explain("agent time = its learner work + its sends (Outbox: encode + audit record + send); per episode = / batch")
    for mode in MODES:
        result(f"{mode}_agent_ms_per_episode", per_episode[mode] * 1e3, "ms", f"audit = {mode}: agent time per episode")
    result("agent_frames_over_hashes", per_episode["frames"] / per_episode["hashes"], "x",
           "full capture / hashes only, whole agent (aim <= 1.10)")
    for mode in MODES:
        result(f"{mode}_send_ms_per_episode", sending[mode] * 1e3, "ms", f"audit = {mode}: send path alone per episode")
    result("send_frames_over_hashes", sending["frames"] / sending["hashes"], "x", "full capture / hashes only, send path")
    for mode in MODES:
        result(f"{mode}_record_bytes", sizes[mode], "B", f"audit = {mode}: mean audit-log bytes per message")


if __name__ == "__main__":
    main()

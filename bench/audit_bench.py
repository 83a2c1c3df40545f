"""Audit cost: time per episode of one agent with full frame capture, compressed capture and hashes only.

    python bench/audit_bench.py [--updates 48] [--quick]

What is timed (in-process, NOT a cluster: with ~10 processes on 2 cores a cluster's per-update time
varies by more than the effect measured here): agent 0 of an `ss-sim` Simulation (predation, 8
agents, batch 16) is driven by the unchanged simulation loop, and everything agent 0's process
would do on its side is timed: its learner work (act + record for T steps, GAE, K rounds of
outgoing + Adam pass) and its sends through the real send choke point (`Outbox.send`: encode,
audit record, `send_multipart`) for the exact messages the agent process sends per episode batch:
RESET, T STEP, and per round the DIST/SUGG that `PeerLink.exchange` publishes. The sends go to a PUB
socket with no subscriber (the socket call is the same in both modes; only the audit record differs).
The other agents and the world run untimed. Updates cycle frames, compressed, hashes, hashes, compressed,
frames, ... (a palindrome: linear drift adds the same to every mode).
Not included: receiving and decoding (identical in both modes) and waiting for other processes.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zmq

from _timing import explain, median, predation, result
from agent.exchange import Outgoing, Received
from agent.algorithms.ss import SSLearner
from agent.peer_link import PeerLink
from coordinator.sim import Simulation
from protocol.audit.outbox import Outbox
from protocol.audit.log import AuditLog
from protocol.transport.inbox import Inbox
from protocol.wire.messages import Kind

MODES = ("frames", "compressed", "hashes")
ENDPOINT = "inproc://audit-bench"


class TimedAgent:
    """Agent `me`'s SSLearner, called by the simulation as the agent process calls it, plus the process's
    sends: RESET before the first act() of a batch and STEP after each (as agent/env_link.py sends
    them), and after outgoing(k) the round's DIST/SUGG through the real `PeerLink.exchange` (with no
    neighbour expected, so it publishes and returns without waiting). Accumulates the seconds spent in
    all of it, and separately in the sends; `mode` picks the outbox (and so the audit log) in use."""

    def __init__(self, learner: SSLearner, outboxes: dict[str, Outbox], peers: PeerLink, iterations: int):
        self.learner = learner
        self.outboxes = outboxes
        self.peers = peers
        self.iterations = iterations
        self.mode = MODES[0]
        self.update = 0
        self.step = 0
        self.elapsed = 0.0
        self.sending = 0.0

    def _env_send(self, kind: Kind, body: dict) -> None:
        start = time.perf_counter()
        self.outboxes[self.mode].send(self.peers.pub, kind, body, dest="envserver", endpoint=ENDPOINT,
                                      step=self.step)
        self.sending += time.perf_counter() - start

    def act(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        if self.step == 0:
            self._env_send(Kind.RESET, {"episode": self.update})
        actions = self.learner.act(obs, mask)
        self.step += 1
        self._env_send(Kind.STEP, {"episode": self.update, "actions": np.asarray(actions, dtype=np.int64)})
        self.elapsed += time.perf_counter() - start
        return actions

    def record(self, rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
               next_obs: np.ndarray, executed: bool = True) -> None:
        start = time.perf_counter()
        self.learner.record(rewards, terminated, truncated, next_obs, executed)
        self.elapsed += time.perf_counter() - start

    def begin_update(self) -> None:
        start = time.perf_counter()
        self.learner.begin_update()
        self.elapsed += time.perf_counter() - start

    def outgoing(self, k: int) -> Outgoing:
        start = time.perf_counter()
        out = self.learner.outgoing(k)
        sent = time.perf_counter()
        self.peers.outbox = self.outboxes[self.mode]
        self.peers.exchange(self.update * self.iterations + k, out, {}, 0, 0.0)
        done = time.perf_counter()
        self.sending += done - sent
        self.elapsed += done - start
        return out

    def update_step(self, k: int, received: Received) -> None:
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

    def __getattr__(self, name: str) -> object:  # the rest of the learner (expected, state_dict, ...) untimed
        return getattr(self.learner, name)

    def take(self) -> tuple[float, float]:
        """(total, sending) seconds since the last call, and reset both."""
        taken = (self.elapsed, self.sending)
        self.elapsed = self.sending = 0.0
        return taken


def interleaved(update: int) -> str:
    """The audit mode of update `update`: MODES, then MODES backwards, and again."""
    cycle = MODES + MODES[::-1]
    return cycle[update % len(cycle)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--updates", type=int, default=48, help="timed updates (a third per mode), after 6 warm-ups")
    parser.add_argument("--quick", action="store_true", help="tiny settings for the smoke test")
    args = parser.parse_args()
    if args.quick:
        args.agents, args.batch, args.updates = 2, 2, 6
    torch.set_num_threads(1)
    warmup = 6
    config = predation(args.agents, args.batch, warmup + args.updates)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(ENDPOINT)
    log = logging.getLogger("audit-bench")
    times: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        sim = Simulation(config, Path(tmp) / "sim")
        logs = {mode: AuditLog(Path(tmp) / f"{mode}.audit.log", mode=mode) for mode in MODES}
        outboxes = {mode: Outbox("agent", config.algo, "bench", 0, audit) for mode, audit in logs.items()}
        peers = PeerLink(ctx, 0, sock, ENDPOINT, {}, outboxes[MODES[0]], Inbox("agent 0", log),
                         sim.spec.n_actions, sim.learners[0].subscriptions())
        agent = TimedAgent(sim.learners[0], outboxes, peers, config.iterations)
        sim.learners[0] = agent
        sim.open(progress=False)
        try:
            for update in range(warmup + args.updates):
                agent.mode = interleaved(update)
                sim.rollout()
                sim.train()
                taken = agent.take()
                if update >= warmup:
                    times[agent.mode].append(taken)
            sizes = {mode: audit.path.stat().st_size / audit.count for mode, audit in logs.items()}
            messages = sum(audit.count for audit in logs.values()) // (warmup + args.updates)
        finally:
            sim.close()
            for audit in logs.values():
                audit.close()
            sock.close()
            ctx.term()

    per_episode = {mode: median(t for t, _ in times[mode]) / config.batch for mode in MODES}
    sending = {mode: median(s for _, s in times[mode]) / config.batch for mode in MODES}
    explain(f"in-process: agent 0 of predation, {args.agents} agents, batch {args.batch}, algo {config.algo}, "
            f"K={config.iterations}; {messages} messages per episode batch; median of {len(times['frames'])} "
            f"updates per mode, interleaved")
    explain("agent time = its learner work + its sends (Outbox: encode + audit record + send); per episode = / batch")
    for mode in MODES:
        result(f"{mode}_agent_ms_per_episode", per_episode[mode] * 1e3, "ms", f"audit = {mode}: agent time per episode")
    result("agent_frames_over_hashes", per_episode["frames"] / per_episode["hashes"], "x",
           "full capture / hashes only, whole agent (aim <= 1.10)")
    result("agent_compressed_over_hashes", per_episode["compressed"] / per_episode["hashes"], "x",
           "compressed capture / hashes only, whole agent")
    for mode in MODES:
        result(f"{mode}_send_ms_per_episode", sending[mode] * 1e3, "ms", f"audit = {mode}: send path alone per episode")
    result("send_frames_over_hashes", sending["frames"] / sending["hashes"], "x", "full capture / hashes only, send path")
    result("send_compressed_over_hashes", sending["compressed"] / sending["hashes"], "x",
           "compressed capture / hashes only, send path")
    for mode in MODES:
        result(f"{mode}_record_bytes", sizes[mode], "B", f"audit = {mode}: mean audit-log bytes per message")
    result("compressed_over_frames_bytes", sizes["compressed"] / sizes["frames"], "x", "audit-log bytes, compressed / frames")


if __name__ == "__main__":
    main()

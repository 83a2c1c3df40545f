"""`ss-envserver`: steps the shared world in lockstep and hands each agent only its own data.

The world's loop is envserver/lockstep.py's (the same in `ss-sim`); here its requests are answered over
ZeroMQ: per episode batch, wait for RESET from every live agent; per step, wait for every live agent's
STEP (deadline; a missing agent gets the env's default action, is flagged in the log and counted in
metrics.csv); reply to each agent with its own observation, its own reward, its episode ends (terminated
/ truncated) and its neighbour mask. Agent i's reward goes to agent i and nowhere else.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

import numpy as np

from envserver.lockstep import Collect, EnvLoop, Observations
from envserver.worlds import make_world
from protocol.transport import sockets
from protocol.loops import advance
from protocol.run.checkpoints import read_json, restore, versions
from protocol.wire.messages import ENVSERVER_ID, Kind, Message
from protocol.run.rundir import RunDir
from protocol.transport.rendezvous import Start
from protocol.transport.service import AgentFacing, Served
from protocol.transport.service import serve as run_service
from protocol.run.topology import resolve_neighbors

log = logging.getLogger("ss-envserver")


class EnvServer(AgentFacing):
    """The world, a bound ROUTER, and the routing table learnt from validated agent messages."""

    def __init__(self, served: Served, tensorboard: bool = False):
        super().__init__(served)
        self.tensorboard = tensorboard
        directory = served.directory
        self.neighbors = resolve_neighbors(directory.config, directory.spec)
        self.world = make_world(self.config.env, self.config.agents, self.config.batch, self.config.seed)
        self.spec = self.world.spec
        self.live = set(range(self.config.agents))  # agents that answered their last request in time
        self.early_resets: dict[int, dict[int, Message]] = {}  # episode batch -> agent -> RESET sent in advance
        self.saved: dict[int, dict] = {}  # the world's checkpoints by update, read only when resuming

    # ---- receiving --------------------------------------------------------------------------

    def collect(self, kind: Kind, episode: int, step: int, deadline_s: float,
                then_s: float | None = None) -> dict[int, Message]:
        """One `kind` message per live agent for (episode, step), until all arrived or the deadline; with
        `then_s`, once the first one is in, the others get at most `then_s` more (so a paused agent holds
        the healthy ones one step deadline at a batch's start, not the whole reset deadline).

        An agent that missed a deadline is no longer waited for (it gets the default action) until a
        message of it arrives in time again; a RESET for a later batch is kept for that batch; a stale
        request marked `resync` (its sender lost replies) is answered with the batch it can still join."""
        got = self.early_resets.pop(episode, {}) if kind is Kind.RESET else {}
        end = time.monotonic() + (deadline_s if then_s is None or not got else min(deadline_s, then_s))
        waiting = lambda: [i for i in self.live if i not in got]  # noqa: E731
        while waiting() and (left := end - time.monotonic()) > 0:
            self.while_waiting()
            if not self.sock.poll(int(min(left, 0.5) * 1000)):
                continue
            msg = self.routes.receive({Kind.RESET, Kind.STEP})
            if msg is None:
                continue
            asked = msg.body["episode"]
            if msg.kind is kind and asked == episode and msg.step == step:
                if then_s is not None and not got:
                    end = min(end, time.monotonic() + then_s)
                got[msg.src] = msg
                self.live.add(msg.src)
                self.routes.attach(msg.src)
            elif msg.kind is Kind.RESET and asked > episode:
                self.early_resets.setdefault(asked, {})[msg.src] = msg
                self.routes.attach(msg.src)
            elif msg.body.get("resync"):
                join = episode if kind is Kind.RESET else episode + 1
                if not self.send_join(msg.src, join, f"{msg.kind.value} e{asked} s{msg.step} is stale: "
                                                     f"join episode batch {join}"):
                    self.live.discard(msg.src)
            else:
                self.inbox.drop("stale", f"{msg.kind.value} e{asked} s{msg.step} "
                                f"from agent {msg.src} while waiting for {kind.value} e{episode} s{step}")
        for i in waiting():
            log.warning("agent %d missed %s e%d s%d (deadline %.0fs): default action until it is back", i,
                        kind.value, episode, step, deadline_s)
            self.live.discard(i)
        return got

    # ---- the loop's requests, over ZeroMQ ---------------------------------------------------------

    def answer(self, request: Collect | Observations) -> dict[int, object] | None:
        """Collect: every live agent's RESET (bodies) or STEP (validated actions) by its deadline. Observations:
        to every agent we can reach, its own."""
        cfg = self.config
        if isinstance(request, Observations):
            for i in self.routes:
                self._send(i, Kind.OBS, request.bodies[i], request.step)
            return None
        if request.kind is Kind.RESET:
            self.link.progress = request.episode
            # under CL, the agents first wait up to reset_deadline_s at the central learner for a straggler's
            # REWARD: give them that long again before deciding that none of them is coming
            wait_s = cfg.reset_deadline_s * (2 if cfg.algorithm.central_learner else 1)
            resets = self.collect(Kind.RESET, request.episode, 0, wait_s, then_s=cfg.step_deadline_s)
            if not resets:
                raise RuntimeError(f"no agent asked for episode batch {request.episode} within {wait_s:.0f}s")
            return {i: msg.body for i, msg in resets.items()}
        steps = self.collect(Kind.STEP, request.episode, request.step, cfg.step_deadline_s)
        return {i: self._actions(i, msg) for i, msg in steps.items()}

    def _send(self, agent: int, kind: Kind, body: dict, step: int) -> None:
        if not self.send_to(agent, kind, body, step=step):
            self.live.discard(agent)

    def _actions(self, i: int, msg: Message) -> np.ndarray:
        acts = msg.body["actions"]
        if acts.shape != (self.config.batch,) or acts.min() < 0 or acts.max() >= self.spec.n_actions:
            self.inbox.drop("invalid", f"agent {i} sent actions {acts.shape} outside the action space")
            return np.full(self.config.batch, self.spec.default_action, dtype=np.int64)
        return acts

    def checkpoints(self) -> list[int]:
        """Read the world's checkpoints (called only when the run resumes); their updates."""
        self.saved = versions(self.run_dir.world_checkpoint, read_json)
        return sorted(self.saved)

    def run(self, start: Start) -> None:
        """The world's loop (envserver/lockstep.py, as in `ss-sim`) from `start.update`, answered here. A
        restarted env server restores its newest world state and plays on from the batch the agents are at."""
        restore(lambda state: self.world.set_state(state["world"]), self.saved, start.checkpoint,
                self.run_dir.world_checkpoint)
        loop = EnvLoop(self.world, self.config, self.neighbors, self.run_dir, log, self.tensorboard).run(start.update)
        request = advance(loop, None)
        while request is not None:
            request = advance(loop, self.answer(request))


def serve(coordinator: str, bind: str, run_id: str, out: RunDir, advertise: str | None = None,
          keys_dir: Path | None = None, tensorboard: bool = False) -> None:
    """Register with the coordinator, wait for START, then play the whole run (with `tensorboard`, metrics.csv
    is mirrored to DIR/tensorboard)."""
    build = functools.partial(EnvServer, tensorboard=tensorboard)
    run_service("envserver", ENVSERVER_ID, "ss", build, coordinator=coordinator, bind=bind, run_id=run_id,
                out=out, log=log, advertise=advertise, keys_dir=keys_dir,
                max_inbound_bytes=sockets.STEP_MAX_MSG_SIZE)

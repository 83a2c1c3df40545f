"""`ss-envserver`: steps the shared world in lockstep and hands each agent only its own data.

Per episode batch: wait for RESET from every live agent, reset, reply; then per step wait for every
live agent's STEP (deadline; a missing agent gets the env's default action, is flagged in the log and
counted in metrics.csv), step, and reply to each agent with its own observation, its own reward, its
episode ends (terminated / truncated) and its neighbour mask. Agent i's reward goes to agent i and
nowhere else.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

import numpy as np

from envserver.metrics import BatchReturns, metric_columns
from envserver.observe import observation
from envserver.worlds import StepResult, make_world
from protocol.transport import sockets
from protocol.run.checkpoints import read_json, restore, save_json, versions
from protocol.run.csvlog import CsvLog
from protocol.wire.messages import ENVSERVER_ID, Kind, Message
from protocol.run.rundir import RunDir
from protocol.transport.rendezvous import Start
from protocol.transport.service import AgentFacing, Served
from protocol.transport.service import serve as run_service
from protocol.run.topology import project_mask, resolve_neighbors

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

    # ---- stepping ---------------------------------------------------------------------------

    def reply(self, result: StepResult, episode: int, step: int, defaulted: set[int]) -> None:
        """Each agent its own observation, reward and mask, nothing of anyone else's; an agent that missed
        the deadline gets its reply too (`default_used`), so it can catch up instead of waiting."""
        for i in self.routes:
            mask = project_mask(self.spec.candidates[i], result.masks[i], self.neighbors[i])
            body = observation(result, i, episode, step, mask, i in defaulted)
            self._send(i, Kind.OBS, body, step)

    def _send(self, agent: int, kind: Kind, body: dict, step: int) -> None:
        if not self.send_to(agent, kind, body, step=step):
            self.live.discard(agent)

    def play_batch(self, update: int) -> dict[str, object]:
        """One episode batch in lockstep; returns its metrics.csv row."""
        cfg = self.config
        self.link.progress = update
        resets = self.collect(Kind.RESET, update, 0, cfg.reset_deadline_s, then_s=cfg.step_deadline_s)
        if not resets:
            raise RuntimeError(f"no agent asked for episode batch {update} within {cfg.reset_deadline_s:.0f}s")
        returns = BatchReturns(self.world)
        result = self.world.reset()
        self.reply(result, update, 0, set(range(cfg.agents)) - set(resets))
        for t in range(1, self.spec.horizon + 1):
            steps = self.collect(Kind.STEP, update, t, cfg.step_deadline_s)
            actions = np.full((cfg.agents, cfg.batch), self.spec.default_action, dtype=np.int64)
            for i, msg in steps.items():
                actions[i] = self._actions(i, msg)
            defaulted = set(range(cfg.agents)) - set(steps)
            result = self.world.step(actions)
            returns.add(result.rewards, missing=len(defaulted))
            self.reply(result, update, t, defaulted)
        return returns.row((update + 1) * cfg.batch)

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
        """Episode batches `start.update` .. the last; metrics.csv gets one row per batch, exactly as `ss-sim`
        writes it, and the world is checkpointed on the agents' schedule (world_checkpoint.json, as `ss-sim`).
        A restarted env server restores its newest world state and plays on from the batch the agents are at."""
        cfg, path = self.config, self.run_dir.world_checkpoint
        restore(lambda state: self.world.set_state(state["world"]), self.saved, start.checkpoint, path)
        metrics = CsvLog(self.run_dir.metrics, metric_columns(self.world), cfg.kept_episodes(start.update),
                         self.run_dir.tensorboard if self.tensorboard else None)
        try:
            for update in range(start.update, cfg.updates):
                row = self.play_batch(update)
                metrics.append(row)
                if row["missing_actions"]:
                    log.warning("batch %d: %d agent-steps used the default action", update, row["missing_actions"])
                if cfg.checkpoint_due(update + 1):
                    save_json(path, {"update": update + 1, "world": self.world.get_state()})
        finally:
            metrics.close()


def serve(coordinator: str, bind: str, run_id: str, out: RunDir, advertise: str | None = None,
          keys_dir: Path | None = None, tensorboard: bool = False) -> None:
    """Register with the coordinator, wait for START, then play the whole run (with `tensorboard`, metrics.csv
    is mirrored to DIR/tensorboard)."""
    build = functools.partial(EnvServer, tensorboard=tensorboard)
    run_service("envserver", ENVSERVER_ID, "ss", build, coordinator=coordinator, bind=bind, run_id=run_id,
                out=out, log=log, advertise=advertise, keys_dir=keys_dir,
                max_inbound_bytes=sockets.STEP_MAX_MSG_SIZE)

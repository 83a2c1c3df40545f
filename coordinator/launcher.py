"""`ss-cluster`: a whole local cluster - coordinator, env server, N agents (and CL's central learner) - as
separate OS processes, forked from a fork server that imported torch and our modules once
(coordinator/zygote.py; `--backend ray` places them on Ray nodes instead, coordinator/ray_backend.py).

Every child gets its own log file in DIR/logs/ and is listed in DIR/processes.json. The launcher
supervises them: a child that dies without a word (killed by a signal: kill -9, a crash, the OOM killer)
is restarted with backoff, at most `max_restarts` times each, at the endpoint it had (every port is
pinned at launch), and rejoins the running run. A child that reports a failure (a non-zero exit: bad
input, a deadline, SIGTERM) stops the run, as does Ctrl-C or running out of restarts: every child is
stopped (SIGTERM, then SIGKILL after a grace period) and the launcher exits non-zero, printing the failing
process's last log lines. Children also receive SIGTERM if the launcher itself dies (Linux parent-death
signal), so no run leaves orphans behind.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from coordinator.progress import RunProgress
from coordinator.zygote import Zygote
from protocol.run.config import RunConfig, write_toml
from protocol.run.csvlog import read_rows
from protocol.transport.keys import generate_keypair, run_key_names
from protocol.run.rundir import RunDir

if TYPE_CHECKING:
    from coordinator.ray_backend import RayPlacement

PR_SET_PDEATHSIG = 1
RESTART_BACKOFF_S = 1.0  # the first restart's delay; it doubles with each further restart of a process
MAX_BACKOFF_S = 30.0


_picked: set[int] = set()  # the ports free_port has handed out in this process


def ephemeral_floor() -> int:
    """The lowest port the kernel hands to outgoing connections (ip_local_port_range; 32768 if unreadable)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on `host`, below the ephemeral range and not handed out before.

    Below the ephemeral range, because the port is bound later (and again by a restarted process), while
    outgoing connections keep taking ephemeral ports: at 128 agents a cluster holds ~16,000 connections, and
    a port picked from the ephemeral range can be taken by one of them before its process binds it (seen)."""
    floor = ephemeral_floor()
    candidates = [port for port in secrets.SystemRandom().sample(range(10000, floor), min(200, max(floor - 10000, 0)))
                  if port not in _picked]
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _picked.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # no room below the range: any free port
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """One process of the cluster."""

    role: str
    id: int | None
    cmd: list[str]
    log: Path
    proc: subprocess.Popen | None = None
    restarts: int = 0
    restart_at: float | None = None  # when a scheduled restart is due
    finished: bool = False  # exited 0

    @property
    def label(self) -> str:
        return self.role if self.id is None else f"{self.role} {self.id}"

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class LaunchError(Exception):
    """The cluster cannot be started as asked (e.g. Ray cannot place it); the message is one line."""


class Cluster:
    """Builds the command lines, starts the children, watches them, and stops them all: the local backend,
    every child a subprocess of this one (the Ray backend, coordinator/ray_backend.py, places them on nodes)."""

    def __init__(self, config: RunConfig, out: Path, run_id: str | None = None, resume: bool = True,
                 curve: bool = False, max_restarts: int = 3, tensorboard: bool = False, fork_server: bool = True):
        self.config = config
        self.tensorboard = tensorboard
        self.max_restarts = max_restarts
        self.resume = resume
        self.curve = curve
        self.keys: Path | None = None  # the run's key directory, made by start() when curve
        self.run_dir = RunDir(out)
        self.run_id = run_id or f"run-{secrets.token_hex(4)}"
        self.coordinator = ""  # its endpoint, chosen by start()
        self.children: list[Child] = []
        self.fork_server = fork_server  # start the children from a zygote (coordinator/zygote.py)
        self.zygote: Zygote | None = None

    def host(self, role: str, id: int | None) -> str:
        """The address the process `role` `id` binds and is dialled at."""
        return "127.0.0.1"

    def spawn(self, child: Child) -> None:
        """Start (or restart) `child`, appending to its log: forked from the zygote, or (`fork_server` False)
        as a subprocess of the launcher."""
        if self.fork_server:
            if self.zygote is None:
                self.zygote = Zygote(environ_for_children(), _die_with_parent)
            child.proc = self.zygote.spawn(child.cmd, child.log, environ_for_children())
            return
        with open(child.log, "ab") as log:
            child.proc = subprocess.Popen(
                child.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_die_with_parent, env=environ_for_children(),
            )

    def commands(self) -> list[Child]:
        py, rd, logs = sys.executable, self.run_dir, self.run_dir.logs
        run = ["--out", str(rd.root), "--run-id", self.run_id, *(["--keys", str(self.keys)] if self.keys else [])]
        # every worker binds a pinned port, so a restarted one comes back where its peers dial it
        common = [*run, "--coordinator", self.coordinator]
        pinned = lambda role, id=None: ["--bind", f"tcp://{self.host(role, id)}:{free_port()}"]  # noqa: E731
        board = ["--tensorboard"] if self.tensorboard else []
        children = [
            Child("coordinator", None, [py, "-m", "coordinator", "--config", str(rd.config),
                                        "--bind", self.coordinator, *run,
                                        *([] if self.resume else ["--no-resume"])], logs / "coordinator.log"),
            Child("envserver", None, [py, "-m", "envserver", *pinned("envserver"), *board, *common], logs / "envserver.log"),
        ]
        if self.config.algorithm.central_learner:
            children.append(Child("learner", None, [py, "-m", "agent.central", *pinned("learner"), *common],
                                  logs / "learner.log"))
        for i in range(self.config.agents):
            children.append(Child("agent", i, [py, "-m", "agent", "--id", str(i), *pinned("agent", i), "--audit",
                                               self.config.audit, *board, *common], logs / f"agent-{i}.log"))
        return children

    def make_keys(self) -> Path:
        """DIR/keys with a key pair for every process of this run (made once, kept for resumed runs)."""
        keys = self.run_dir.root / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        for name in run_key_names(self.config.agents, self.config.algorithm.central_learner):
            if not (keys / f"{name}.key_secret").exists():
                generate_keypair(keys, name)
        return keys

    def start(self) -> None:
        """Write config.toml, start every process, and record them in processes.json."""
        self.run_dir.make(self.config.agents)
        write_toml(self.config, self.run_dir.config)
        if self.curve:
            self.keys = self.make_keys()
        self.coordinator = f"tcp://{self.host('coordinator', None)}:{free_port()}"
        self.children = self.commands()
        for child in self.children:
            self.spawn(child)
        self.write_processes()

    def write_processes(self) -> None:
        """processes.json: role, id, current pid, restarts so far and command line of every process."""
        self.run_dir.processes.write_text(json.dumps([
            {"role": c.role, "id": c.id, "pid": c.proc.pid, "restarts": c.restarts, "cmd": c.cmd, "log": str(c.log),
             **getattr(c.proc, "placement", {})}
            for c in self.children
        ], indent=2))

    def wait(self, progress: bool = True) -> Child | None:
        """Until every process has finished; returns the child that failed (None if the run succeeded).
        Dead children are restarted on the way (`supervise`)."""
        bar = RunProgress(self.config, enabled=progress)
        shown = 0
        try:
            while True:
                exits = self.zygote.exits() if self.zygote is not None else 0
                failed = self.supervise(bar)
                if failed is not None:
                    return failed
                shown = self._show_progress(bar, shown)
                if all(c.finished for c in self.children if c.role != "coordinator"):
                    self.end_coordinator()
                    return None
                self._pause(exits)
        finally:
            bar.close()

    def supervise(self, bar: RunProgress) -> Child | None:
        """Note finished children, restart dead ones when their backoff is over; returns a child that failed
        (reported a failure, or died once more than max_restarts allow)."""
        now = time.monotonic()
        for child in self.children:
            if child.finished:
                continue
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restart_at = None
                    self.spawn(child)
                    self.write_processes()
                continue
            code = child.proc.poll()
            if code == 0:
                child.finished = True
            elif code is not None and code >= 0:
                return child
            elif code is not None:
                if child.restarts >= self.max_restarts:
                    bar.write(f"{child.label} (pid {child.proc.pid}) died ({death(child.proc)}) and has used all "
                              f"{self.max_restarts} restarts (--max-restarts): stopping the run")
                    return child
                child.restarts += 1
                delay = min(RESTART_BACKOFF_S * 2 ** (child.restarts - 1), MAX_BACKOFF_S)
                bar.write(f"{child.label} (pid {child.proc.pid}) died ({death(child.proc)}); restarting it in "
                          f"{delay:.0f}s (restart {child.restarts} of {self.max_restarts})")
                child.restart_at = now + delay
        return None

    def end_coordinator(self, grace_s: float = 10.0) -> None:
        """Every worker finished: the coordinator exits on its own once their STOPs are in. A restarted
        coordinator may never hear of processes that finished before it came back: end it after a grace."""
        coordinator = next(c for c in self.children if c.role == "coordinator")
        if coordinator.restart_at is not None or coordinator.proc.poll() is not None:
            return
        try:
            coordinator.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            coordinator.proc.terminate()

    def _pause(self, exits: int) -> None:
        """Between two looks at the children: 0.5 s, cut short when a forked child exits (its exit code is
        news; `exits` is how many had exited before the look)."""
        if self.zygote is not None:
            self.zygote.wait_exit(exits, 0.5)
        else:
            time.sleep(0.5)  # polling child exit codes, not synchronising with them

    def _show_progress(self, bar: RunProgress, shown: int) -> int:
        if not self.run_dir.metrics.exists():
            return shown
        rows = read_rows(self.run_dir.metrics)
        if len(rows) > shown:
            bar.advance(rows[-1], len(rows) - shown)
        return len(rows)

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM every live child, SIGKILL whoever is still alive after the grace period."""
        live = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for child in live:
            child.proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + grace_s
        for child in live:
            try:
                child.proc.wait(timeout=max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        if self.zygote is not None:
            self.zygote.close()


def run_cluster(config: RunConfig, out: Path, progress: bool = True, resume: bool = True,
                curve: bool = False, max_restarts: int = 3, tensorboard: bool = False,
                ray: "RayPlacement | None" = None) -> int:
    """Start, supervise and stop a cluster (continuing from its checkpoints unless `resume` is False; with
    `curve`, CurveZMQ on every socket): local subprocesses, or with `ray`, placed on a Ray cluster; returns
    the exit code for `ss-cluster`."""
    # Ctrl-C (SIGINT) stops the cluster even when we were started with SIGINT ignored, as a shell does for a
    # background command (Python then installs no KeyboardInterrupt handler of its own)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    options = dict(resume=resume, curve=curve, max_restarts=max_restarts, tensorboard=tensorboard)
    if ray is None:
        cluster = Cluster(config, out, **options)
    else:
        from coordinator.ray_backend import RayCluster

        cluster = RayCluster(config, out, placement=ray, **options)
    try:
        cluster.start()
        failed = cluster.wait(progress)
    except LaunchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every process of the cluster", file=sys.stderr)
        return 130
    finally:
        cluster.stop()
    if failed is not None:
        print(f"{failed.label} (pid {failed.proc.pid}) ended the run ({death(failed.proc)}); "
              f"last lines of {failed.log}:\n{failed.tail()}{oom_hint(failed.proc)}", file=sys.stderr)
        return 1
    return 0


def death(proc: subprocess.Popen) -> str:
    """How a process that died without a word died: its signal, or (Ray) that its node was lost."""
    return getattr(proc, "cause", None) or signal_name(proc.returncode)


def oom_hint(proc: subprocess.Popen) -> str:
    """For a process killed by SIGKILL that no one here sent: where to look for the kernel's OOM killer."""
    if getattr(proc, "cause", None) is None and proc.returncode == -signal.SIGKILL:
        return ("\nSIGKILL that no process of the cluster sent usually comes from the kernel's OOM killer: see "
                "`dmesg | grep -i 'killed process'`; large N runs in less memory with --suggester shared")
    return ""


def signal_name(code: int) -> str:
    """'exit code 1' or 'killed by SIGKILL' for a Popen return code."""
    return f"exit code {code}" if code >= 0 else f"killed by {signal.Signals(-code).name}"


def environ_for_children() -> dict[str, str]:
    """Children run single-threaded BLAS/torch: many agents share few cores."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

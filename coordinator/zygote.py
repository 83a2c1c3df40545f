"""A fork server for the local launcher: one process imports torch and every module of ours once, then forks
each agent (and the env server, the coordinator, CL's learner) from itself. The children share those pages
copy-on-write instead of each loading its own torch (issue 16), and start without the import time. Each
child is still its own OS process with its own state: it runs the same `python -m MODULE ARGS` entry point
a fresh interpreter would, with its own log, session, environment and parent-death signal.

Protocol (JSON lines): the launcher writes `{"cmd": [python, "-m", module, ...], "log": path, "env": {...}}`
to the zygote's stdin; the zygote answers `{"pid": pid}` and later `{"exited": pid, "code": code}` (a Popen
return code: negative for a signal). `Zygote` is the launcher's side, `ZygoteProcess` the handle of one child.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import runpy
import select
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import IO, Any

PR_SET_PDEATHSIG = 1
SPAWN_TIMEOUT_S = 120.0  # the first answer waits for the preload (torch's import: seconds on a busy machine)
PRELOAD = ("torch", "numpy", "zmq", "msgpack", "click", "agent.process", "agent.algorithms", "agent.central",
           "envserver.server", "envserver.worlds.predation", "envserver.worlds.navigation",
           "envserver.worlds.cleanup", "envserver.worlds.harvest", "coordinator.server", "coordinator.cli")


# ---- the zygote process ---------------------------------------------------------------------------


def serve() -> None:
    """Preload, then fork a child per request until stdin closes; report every child's exit as it happens
    (SIGCHLD wakes the loop through a pipe)."""
    import importlib

    import torch

    torch.set_num_threads(1)  # before any op: no thread pool exists to be forked
    for module in PRELOAD:
        importlib.import_module(module)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the launcher's to handle
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # a handler, so the wakeup fd gets a byte
    gc.freeze()  # what is loaded now stays put: the collector never writes to (and so copies) those pages
    out = sys.stdout
    requests = sys.stdin
    while True:
        ready, _, _ = select.select([requests, wake_r], [], [], 1.0)
        if wake_r in ready:
            os.read(wake_r, 4096)
        if requests in ready:
            line = requests.readline()
            if not line:
                break
            pid = fork_child(json.loads(line), (wake_r, wake_w))
            report(out, {"pid": pid})
        reap(out)
    while reap(out, block=True):
        pass
    out.flush()
    os._exit(0)  # nothing left to clean up: skip tearing down the preloaded torch


def report(out: IO[str], message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def reap(out: IO[str], block: bool = False) -> bool:
    """Report every child that has exited; False when there are no children left."""
    while True:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True
        report(out, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})
        if block:
            return True


def fork_child(request: dict[str, Any], wake_fds: tuple[int, int]) -> int:
    """Fork one child that runs `python -m MODULE ARGS` as a fresh interpreter would (without the zygote's
    SIGCHLD wakeup pipe `wake_fds`)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.setsid()
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        for fd in wake_fds:
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        cmd = request["cmd"]
        module = cmd[cmd.index("-m") + 1]
        sys.argv = [module, *cmd[cmd.index("-m") + 2:]]
        gc.unfreeze()
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            if isinstance(done.code, str):
                print(done.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - a child must never return into the zygote's loop
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


# ---- the launcher's side --------------------------------------------------------------------------


class Zygote:
    """The launcher's fork server: `spawn` starts a child; a reader thread collects exit codes."""

    def __init__(self, env: dict[str, str], die_with_parent: Any):
        self.proc = subprocess.Popen([sys.executable, "-m", "coordinator.zygote"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, start_new_session=True,
                                     preexec_fn=die_with_parent)
        self.lock = threading.Lock()
        self.pids: list[int] = []  # answers to spawn requests, in order
        self.codes: dict[int, int] = {}  # exit codes by pid
        self.changed = threading.Condition(self.lock)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            message = json.loads(line)
            with self.changed:
                if "pid" in message:
                    self.pids.append(message["pid"])
                else:
                    self.codes[message["exited"]] = message["code"]
                self.changed.notify_all()

    def spawn(self, cmd: list[str], log: Path, env: dict[str, str]) -> "ZygoteProcess":
        with self.changed:
            asked = len(self.pids)
            self.proc.stdin.write(json.dumps({"cmd": cmd, "log": str(log), "env": env}) + "\n")
            self.proc.stdin.flush()
            if not self.changed.wait_for(lambda: len(self.pids) > asked or self.proc.poll() is not None,
                                         SPAWN_TIMEOUT_S):
                raise RuntimeError(f"the fork server did not answer within {SPAWN_TIMEOUT_S:.0f} s")
            if len(self.pids) <= asked:
                raise RuntimeError(f"the fork server exited (code {self.proc.poll()})")
            return ZygoteProcess(self, self.pids[asked])

    def exits(self) -> int:
        """How many children have exited so far."""
        with self.lock:
            return len(self.codes)

    def wait_exit(self, seen: int, timeout: float) -> None:
        """Until more than `seen` children have exited, or `timeout` seconds."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.codes) > seen, timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class ZygoteProcess:
    """A child of the fork server, through the part of subprocess.Popen's interface the launcher uses."""

    def __init__(self, zygote: Zygote, pid: int):
        self.zygote = zygote
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            with self.zygote.lock:
                self.returncode = self.zygote.codes.get(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        with self.zygote.changed:
            if not self.zygote.changed.wait_for(lambda: self.pid in self.zygote.codes, timeout):
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
        return self.poll()

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


if __name__ == "__main__":
    serve()

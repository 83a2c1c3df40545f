"""The Ray actor that runs one process of a cluster on the node Ray placed it on (`ss-cluster --backend ray`).

Ray only places, starts and supervises: the actor starts the very command line the local launcher runs, as a
subprocess of its worker, and every learning message goes over that process's own ZeroMQ sockets. When Ray
restarts the actor (its node was lost, or the launcher asked because the process died) the constructor runs
again and starts the process anew at the endpoint it had, so it rejoins the run as a local restart does.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

import ray

PORT_FREE_WAIT_S = 30.0  # how long a restarted process waits for its predecessor to release its port


def wait_until_bindable(host: str, port: int, timeout_s: float = PORT_FREE_WAIT_S) -> None:
    """Until `host:port` can be bound: a predecessor on this machine (a lost node's process, going down on
    its parent-death signal) may still hold it."""
    end = time.monotonic() + timeout_s
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
                return
            except OSError:
                if time.monotonic() > end:
                    return  # the process will say why it cannot bind
        time.sleep(0.2)  # polling the port's owner, which is not ours to wait on


class ProcessActor:
    """Runs `cmd` on this node, appending to `log`; `poll` reports its exit code once it has one."""

    def __init__(self, cmd: list[str], log: str, env: dict[str, str], host: str, port: int):
        wait_until_bindable(host, port)
        # the process goes down with this actor's worker (a lost node, a killed actor), as local children do
        # with the launcher; setpriv sets the parent-death signal before exec
        guard = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([*guard, *cmd], stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True, env=env)

    def where(self) -> dict[str, object]:
        """The node this process runs on, its address there, and its pid."""
        return {"node": ray.get_runtime_context().get_node_id(), "host": ray.util.get_node_ip_address(),
                "pid": self.proc.pid}

    def poll(self) -> int | None:
        return self.proc.poll()

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.Signals(signum))

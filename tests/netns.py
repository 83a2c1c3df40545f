"""Machines for multi-host tests: network namespaces joined by veth pairs to a bridge, on addresses we assign.

`Network(hosts)` makes one namespace per host (loopback up, `eth0` at 10.77.S.(k+1)/24) and a hub namespace
holding the bridge, so nothing is added to the machine's own namespace; with `loss`, each host drops that
fraction of the packets it receives (`iptables -m statistic --mode random`: this kernel has no netem).
`cmd(k, ...)` runs a command on host k. Leaving the `with` block deletes every namespace it made.
Needs root, `ip` (iproute2) and, for loss, `iptables`; `unavailable()` says why not, for a skip.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess


def unavailable(loss: bool = False) -> str | None:
    """Why namespace tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", *(("iptables",) if loss else ())):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install iproute2 iptables)"
    return None


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


class Network:
    """`hosts` namespaces on one bridged /24; host k has address `address(k)`."""

    def __init__(self, hosts: int, loss: float = 0.0):
        self.tag = f"ss{os.getpid() % 10000}{random.randrange(100)}"
        self.subnet = random.randrange(1, 250)
        self.hub = f"{self.tag}hub"
        self.names = [f"{self.tag}h{k}" for k in range(hosts)]
        self.loss = loss

    def address(self, k: int) -> str:
        return f"10.77.{self.subnet}.{k + 1}"

    def cmd(self, k: int, *command: str) -> list[str]:
        """`command` run on host k."""
        return ["ip", "netns", "exec", self.names[k], *command]

    def __enter__(self) -> "Network":
        try:
            sh("ip", "netns", "add", self.hub)
            sh("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", self.hub, "link", "set", "br0", "up")
            for k, name in enumerate(self.names):
                sh("ip", "netns", "add", name)
                sh("ip", "-n", name, "link", "set", "lo", "up")
                sh("ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", f"port{k}",
                   "netns", self.hub)
                sh("ip", "-n", name, "addr", "add", f"{self.address(k)}/24", "dev", "eth0")
                sh("ip", "-n", name, "link", "set", "eth0", "up")
                sh("ip", "-n", self.hub, "link", "set", f"port{k}", "master", "br0", "up")
                if self.loss:
                    sh("ip", "netns", "exec", name, "iptables", "-A", "INPUT", "-i", "eth0", "-m", "statistic",
                       "--mode", "random", "--probability", str(self.loss), "-j", "DROP")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for name in (*self.names, self.hub):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)

"""A Ray cluster of several nodes on this machine (`ray.cluster_utils.Cluster`), for the Ray backend's tests
and bench/backend_bench.py: `RayNodes` makes the namespace and runs this module in it.

Run inside a network namespace with only loopback up (`RayNodes` makes one): there Ray advertises 127.0.0.1,
so no Ray traffic leaves the namespace. `python -m tests.raynodes N CPUS` starts N nodes of CPUS logical CPUs,
prints one JSON line {"address": ..., "nodes": [node ids]}, then reads commands on stdin:
`remove NODE_ID` takes that node away (its raylet and workers are killed, as when a machine is lost) and
answers `removed`; end of input shuts the cluster down.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.netns import sh

NODES, NODE_CPUS = 3, 4


class RayNodes:
    """A Ray cluster of NODES nodes in a loopback-only namespace of its own (this module, run inside it)."""

    def __init__(self, tmp: Path):
        self.ns = f"ssray{os.getpid() % 10000}{int(time.monotonic() * 1000) % 1000}"
        self.log = tmp / "raynodes.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "RayNodes":
        sh("ip", "netns", "add", self.ns)
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.cmd(sys.executable, "-m", "tests.raynodes", str(NODES), str(NODE_CPUS)),
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                                         start_new_session=True, cwd=Path(__file__).parent.parent)
        ready = json.loads(self.proc.stdout.readline() or "{}")  # blocks until the nodes are up (or it died)
        assert "address" in ready, self.log.read_text()[-3000:]
        self.address, self.nodes = ready["address"], ready["nodes"]
        return self

    def cmd(self, *command: str) -> list[str]:
        """`command` run inside the namespace."""
        return ["ip", "netns", "exec", self.ns, *command]

    def remove(self, node: str) -> None:
        self.proc.stdin.write(f"remove {node}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "removed"

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.stdin.close()  # the helper shuts the Ray cluster down
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        pids = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True).stdout.split()
        for pid in pids:  # whatever Ray left behind in the namespace
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=30)



def main(nodes: int, cpus: float) -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus, "include_dashboard": False})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=cpus)
    cluster.wait_for_nodes()
    by_id = {node.node_id: node for node in cluster.list_all_nodes()}
    print(json.dumps({"address": cluster.address, "nodes": list(by_id)}), flush=True)
    try:
        for line in sys.stdin:
            verb, _, node_id = line.strip().partition(" ")
            if verb == "remove":
                cluster.remove_node(by_id.pop(node_id), allow_graceful=False)
                print("removed", flush=True)
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]))

"""A Ray cluster of several nodes on this machine (`ray.cluster_utils.Cluster`), for the Ray backend's tests.

Run inside a network namespace with only loopback up (`lo_only_namespace`): there Ray advertises 127.0.0.1,
so no Ray traffic leaves the namespace. `python -m tests.raynodes N CPUS` starts N nodes of CPUS logical CPUs,
prints one JSON line {"address": ..., "nodes": [node ids]}, then reads commands on stdin:
`remove NODE_ID` takes that node away (its raylet and workers are killed, as when a machine is lost) and
answers `removed`; end of input shuts the cluster down.
"""

from __future__ import annotations

import json
import sys


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

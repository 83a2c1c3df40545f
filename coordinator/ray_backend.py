"""`ss-cluster --backend ray`: the same processes as the local launcher, placed and supervised by Ray.

One placement group holds a bundle per process (spread across nodes, or strictly one node each); each
process runs under a `ProcessActor` in its bundle, at an endpoint on that bundle's node. Ray carries only
command lines and exit codes; every learning message still goes over our ZeroMQ sockets through the
audited send path. A process whose node is lost is restarted by Ray (the actor's `max_restarts`) and
rejoins; one killed by a signal is restarted the same way, by asking Ray to restart its actor. The run
directory must be one path that every node sees (a shared file system): each process writes its own part
of it, and a restarted process reads its checkpoint from there, wherever Ray puts it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from coordinator.launcher import Child, Cluster, LaunchError, environ_for_children

PLACEMENT_TIMEOUT_S = 60.0  # how long Ray may take to place every process before the run is refused
RESTART_TIMEOUT_S = 120.0  # how long a restarted actor may take to come back before the run stops
CONNECT_TIMEOUT_S = 5.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class RayPlacement:
    """Where the cluster goes: the Ray cluster's address (None: RAY_ADDRESS or a new local Ray), whether each
    process must be on its own node (`strict`), and the CPUs each process reserves."""

    address: str | None = None
    strict: bool = False
    cpus: float = 1.0


def check_reachable(address: str) -> None:
    """One line, before Ray retries for a minute, when nothing answers at a HOST:PORT address."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise LaunchError(f"cannot reach a Ray cluster at {address} ({err.strerror or err}); start one with "
                          "`ray start --head` or give its address with --ray-address") from None


class RayProcess:
    """A process on a Ray node, seen through the part of subprocess.Popen's interface the launcher uses."""

    def __init__(self, actor: Any):
        self.actor = actor
        self.returncode: int | None = None
        self.cause: str | None = None  # set when the process's node (its actor) was lost
        self.placement: dict[str, object] = {}
        self.restarted()

    def restarted(self, dead_pid: int | None = None) -> None:
        """Wait for the (re)started actor (one whose process is not `dead_pid`: a kill is asynchronous, and
        the old actor may still answer) and learn where its process runs."""
        import ray

        self.returncode, self.cause = None, None
        end = time.monotonic() + RESTART_TIMEOUT_S
        while True:
            try:
                self.placement = ray.get(self.actor.where.remote(), timeout=max(0.0, end - time.monotonic()))
                if self.placement["pid"] != dead_pid:
                    break
                if time.monotonic() > end:
                    raise LaunchError(f"a Ray actor was not restarted within {RESTART_TIMEOUT_S:.0f} s")
                time.sleep(0.2)  # the old actor answered: its restart is still to come
            except ray.exceptions.GetTimeoutError:
                raise LaunchError(f"Ray found no node for a process within {RESTART_TIMEOUT_S:.0f} s") from None
            except ray.exceptions.RayActorError as err:  # being killed or restarted: ask again, for a while
                if time.monotonic() > end:
                    raise LaunchError(f"Ray could not (re)start a process: {str(err).splitlines()[0]}") from None
                time.sleep(0.5)
        self.pending = self.actor.poll.remote()

    @property
    def pid(self) -> int:
        return int(self.placement["pid"])

    def poll(self) -> int | None:
        import ray

        if self.returncode is not None:
            return self.returncode
        if not ray.wait([self.pending], timeout=0)[0]:
            return None
        try:
            code = ray.get(self.pending)
        except ray.exceptions.RayActorError:
            self.cause = f"its Ray node {str(self.placement.get('node'))[:8]} was lost"
            self.returncode = -9  # died without a word, as a SIGKILL: the launcher restarts it
            return self.returncode
        if code is None:
            self.pending = self.actor.poll.remote()
        self.returncode = code
        return code

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired("ray actor", timeout)
            time.sleep(0.1)  # polling the remote exit code
        return self.returncode

    def send_signal(self, signum: int) -> None:
        import ray

        try:
            ray.get(self.actor.signal.remote(int(signum)), timeout=CONNECT_TIMEOUT_S)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            pass  # its node is gone, and the process with it (parent-death signal)

    def terminate(self) -> None:
        self.send_signal(15)

    def kill(self) -> None:
        import ray

        ray.kill(self.actor, no_restart=True)  # the worker dies, and the process with it
        self.returncode = -9 if self.returncode is None else self.returncode


class RayCluster(Cluster):
    """A cluster whose processes Ray places (one placement-group bundle each) and restarts."""

    def __init__(self, *args: Any, placement: RayPlacement, **kwargs: Any):
        super().__init__(*args, fork_server=False, **kwargs)
        self.placement = placement
        self.group: Any = None
        self.hosts: list[str] = []  # the node address of each bundle, in the order of the children

    def host(self, role: str, id: int | None) -> str:
        return self.hosts[self.bundle(role, id)]

    def bundle(self, role: str, id: int | None) -> int:
        """Bundle index of a process: coordinator, env server, (CL's learner), then the agents."""
        fixed = ["coordinator", "envserver", *(["learner"] if self.config.algorithm.central_learner else [])]
        return fixed.index(role) if role != "agent" else len(fixed) + id

    def start(self) -> None:
        self.place()
        if any(host not in LOOPBACK for host in self.hosts) and not self.curve:
            raise LaunchError(f"the Ray nodes have non-loopback addresses ({', '.join(sorted(set(self.hosts)))}): "
                              "give --curve, so that what the processes send each other is encrypted")
        super().start()

    def place(self) -> None:
        """Connect to Ray and reserve a bundle per process; `hosts` learns each bundle's node address."""
        try:
            import ray
            from ray.util.placement_group import placement_group, placement_group_table
        except ImportError:
            raise LaunchError("the Ray backend needs the optional extra: pip install 'ssmarl[ray]'") from None
        if self.placement.address:
            check_reachable(self.placement.address)
        new_ray = {} if self.placement.address else {"include_dashboard": False}  # a local Ray of our own
        ray.init(address=self.placement.address, logging_level="ERROR", log_to_driver=False, **new_ray)
        count = 2 + self.config.algorithm.central_learner + self.config.agents
        nodes = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
        if self.placement.strict and count > len(nodes):
            raise LaunchError(f"--ray-spread strict needs a node for each of the {count} processes; the Ray "
                              f"cluster has {len(nodes)}")
        cpus = [n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n["Alive"]]
        if self.placement.cpus > max(cpus, default=0.0) or count * self.placement.cpus > sum(cpus):
            raise LaunchError(f"{count} processes of {self.placement.cpus:g} CPU each do not fit in the Ray cluster "
                              f"({sum(cpus):g} CPUs, at most {max(cpus, default=0.0):g} on a node); lower --ray-cpus "
                              "or add nodes")
        self.group = placement_group([{"CPU": self.placement.cpus}] * count,
                                     strategy="STRICT_SPREAD" if self.placement.strict else "SPREAD")
        if not self.group.wait(timeout_seconds=PLACEMENT_TIMEOUT_S):
            free = ray.available_resources().get("CPU", 0.0)
            raise LaunchError(f"Ray could not place {count} processes of {self.placement.cpus:g} CPU each within "
                              f"{PLACEMENT_TIMEOUT_S:.0f} s ({free:g} CPUs free on {len(nodes)} nodes); lower "
                              "--ray-cpus or add nodes")
        on_node = placement_group_table(self.group)["bundles_to_node_id"]
        self.hosts = [nodes[on_node[index]] for index in range(count)]

    def spawn(self, child: Child) -> None:
        """First start: an actor in the child's bundle. Restart: Ray restarts the actor (already under way
        when its node was lost; asked for when the process died), whose constructor starts the process."""
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        if isinstance(child.proc, RayProcess):
            if child.proc.cause is None:
                ray.kill(child.proc.actor, no_restart=False)
            child.proc.restarted(dead_pid=child.proc.pid)
            return
        from coordinator.ray_actor import ProcessActor

        host, port = child.cmd[child.cmd.index("--bind") + 1].removeprefix("tcp://").rsplit(":", 1)
        actor = ray.remote(ProcessActor).options(
            num_cpus=self.placement.cpus, max_restarts=self.max_restarts, max_task_retries=0,
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                self.group, placement_group_bundle_index=self.bundle(child.role, child.id)),
        ).remote(child.cmd, str(child.log), environ_for_children(), host, int(port))
        child.proc = RayProcess(actor)

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop every process as the local launcher does, then the actors, the placement group and our
        connection to Ray (the Ray cluster itself is the user's and keeps running)."""
        import ray

        if not ray.is_initialized():
            return
        try:
            super().stop(grace_s)
            for child in self.children:
                if isinstance(child.proc, RayProcess):
                    ray.kill(child.proc.actor, no_restart=True)
            if self.group is not None:
                from ray.util.placement_group import remove_placement_group

                remove_placement_group(self.group)
        finally:
            ray.shutdown()

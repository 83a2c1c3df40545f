"""`ss-deploy`: Kubernetes manifests or a Compose file for a cluster of any size, with its CurveZMQ keys.

Every process is the same command line as in a local cluster, bound on all interfaces of its container
and advertised under a stable DNS name; every socket is CURVE-encrypted with the process's own key. Each
process gets its own run directory (a volume of its own): each writes only its own part of the run.

Kubernetes: the coordinator, the env server (and CL's central learner) are StatefulSets of one pod; the
agents are StatefulSets of one pod each, `agent-<i>`, behind the headless Service `agents`
(`publishNotReadyAddresses`, so peers resolve each other before they are ready), reachable as
`agent-<i>-0.agents`. One StatefulSet per agent, not one for all: a StatefulSet's pods share one template
and Kubernetes cannot name a Secret by ordinal, so only this way does each pod mount its own secret key
and nobody else's. The run's config.toml is a ConfigMap the coordinator reads.
"""

from __future__ import annotations

import base64
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from coordinator.cli import run_options
from protocol.run.config import RunConfig, toml_text, write_toml
from protocol.transport.keys import generate_keypair, key_name
from protocol.wire.messages import CENTRAL_LEARNER_ID, COORDINATOR_ID, ENVSERVER_ID

PORTS = {"coordinator": 5550, "envserver": 5560, "learner": 5565, "agent": 5570}
RUN_DIR = "/run/ssmarl"  # each container's own run directory
KEYS_DIR = "/keys"
CONFIG_DIR = "/etc/ssmarl"
LABEL = "app.kubernetes.io"
REQUESTS = {"coordinator": ("100m", "256Mi"), "envserver": ("1", "512Mi"), "learner": ("1", "512Mi"),
            "agent": ("1", "512Mi")}  # an agent process is ~350 MiB RSS at 8-agent predation
LIMITS_MEMORY = "2Gi"
IMAGE_UID = 10001  # the user deploy/Dockerfile runs as


@dataclass(frozen=True)
class Process:
    """One process of the deployed run: its workload name, role, sender id and DNS name."""

    name: str  # workload (StatefulSet / Compose service) name
    role: str
    src: int  # its sender id (key file name)
    host: str  # the stable DNS name others dial it at

    @property
    def key(self) -> str:
        return key_name(self.src)

    @property
    def endpoint(self) -> str:
        return f"tcp://{self.host}:{PORTS[self.role]}"

    def command(self, config: RunConfig, run_id: str, coordinator: str) -> list[str]:
        """The process's command line (the same as a local cluster's, bound on every interface)."""
        bind = f"tcp://0.0.0.0:{PORTS[self.role]}"
        common = ["--out", RUN_DIR, "--run-id", run_id, "--keys", KEYS_DIR]
        if self.role == "coordinator":
            return ["ss-coordinator", "--config", f"{CONFIG_DIR}/config.toml", "--bind", bind, *common]
        dial = ["--coordinator", coordinator, "--bind", bind, "--advertise", self.endpoint, *common]
        if self.role == "agent":
            return ["ss-agent", "--id", str(self.src), *dial, "--audit", config.audit]
        return ["ss-envserver" if self.role == "envserver" else "ss-critic", *dial]


def processes(config: RunConfig, k8s: bool) -> list[Process]:
    """Coordinator, env server, (CL's learner), agents, with their DNS names under k8s or Compose."""
    servers = [("coordinator", COORDINATOR_ID), ("envserver", ENVSERVER_ID),
               *([("learner", CENTRAL_LEARNER_ID)] if config.algorithm.central_learner else [])]
    found = [Process(role, role, src, f"{role}-0.{role}" if k8s else role) for role, src in servers]
    for i in range(config.agents):
        name = f"agent-{i}"
        found.append(Process(name, "agent", i, f"{name}-0.agents" if k8s else name))
    return found


def make_keys(out: Path, members: list[Process]) -> Path:
    """OUT/keys: a CURVE key pair for every process (kept if there already)."""
    keys = out / "keys"
    for p in members:
        if not (keys / f"{p.key}.key_secret").exists():
            generate_keypair(keys, p.key)
    (out / ".gitignore").write_text("# private keys: never commit them\nkeys/\nsecrets.yaml\n")
    return keys


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def secrets(keys: Path, members: list[Process]) -> list[dict[str, Any]]:
    """One Secret per process with its secret key, and one with every public key."""
    made = [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ss-public-keys"}, "type": "Opaque",
             "data": {f"{p.key}.key": b64(keys / f"{p.key}.key") for p in members}}]
    for p in members:
        made.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"ss-key-{p.name}"},
                     "type": "Opaque", "data": {f"{p.key}.key_secret": b64(keys / f"{p.key}.key_secret")}})
    return made


def statefulset(p: Process, command: list[str], image: str, service: str) -> dict[str, Any]:
    """One pod of `p`: its own secret key and every public key at /keys, its own volume, a TCP readiness
    probe on its port, and resource requests."""
    labels = {f"{LABEL}/name": "ssmarl", f"{LABEL}/component": p.role, f"{LABEL}/instance": p.name}
    cpu, memory = REQUESTS[p.role]
    mounts = [{"name": "keys", "mountPath": KEYS_DIR, "readOnly": True}, {"name": "run", "mountPath": RUN_DIR}]
    volumes: list[dict[str, Any]] = [{"name": "keys", "projected": {"defaultMode": 0o440, "sources": [
        {"secret": {"name": "ss-public-keys"}}, {"secret": {"name": f"ss-key-{p.name}"}}]}}]
    if p.role == "coordinator":
        mounts.append({"name": "config", "mountPath": CONFIG_DIR, "readOnly": True})
        volumes.append({"name": "config", "configMap": {"name": "ss-config"}})
    container = {
        "name": p.role, "image": image, "command": command,
        "ports": [{"name": "zmq", "containerPort": PORTS[p.role]}],
        "env": [{"name": "OMP_NUM_THREADS", "value": "1"}, {"name": "MKL_NUM_THREADS", "value": "1"}],
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": LIMITS_MEMORY}},
        "readinessProbe": {"tcpSocket": {"port": PORTS[p.role]}, "periodSeconds": 10},
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": p.name, "labels": labels},
        "spec": {
            "serviceName": service, "replicas": 1, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "containers": [container], "volumes": volumes, "terminationGracePeriodSeconds": 30,
                # the image's user; fsGroup makes the keys (mode 0440) and the volume its group's
                "securityContext": {"runAsNonRoot": True, "runAsUser": IMAGE_UID, "runAsGroup": IMAGE_UID,
                                    "fsGroup": IMAGE_UID}}},
            "volumeClaimTemplates": [{"metadata": {"name": "run"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        },
    }


def service(name: str, role: str, port: int) -> dict[str, Any]:
    """A headless Service: stable per-pod DNS names, published before the pods are ready."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                     "selector": {f"{LABEL}/name": "ssmarl", f"{LABEL}/component": role},
                     "ports": [{"name": "zmq", "port": port}]}}


def k8s_manifests(config: RunConfig, run_id: str, image: str) -> list[dict[str, Any]]:
    """Services, the config map and a StatefulSet per process (keys: `secrets`)."""
    members = processes(config, k8s=True)
    coordinator = members[0].endpoint
    made = [service(role, role, PORTS[role]) for role in ("coordinator", "envserver", "learner")
            if any(p.role == role for p in members)]
    made.append(service("agents", "agent", PORTS["agent"]))
    made.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ss-config"},
                 "data": {"config.toml": toml_text(config)}})
    for p in members:
        made.append(statefulset(p, p.command(config, run_id, coordinator), image,
                                "agents" if p.role == "agent" else p.role))
    return made


def compose_file(config: RunConfig, run_id: str, image: str) -> dict[str, Any]:
    """One service per process; each mounts its own secret key, the public keys and a volume of its own."""
    members = processes(config, k8s=False)
    coordinator = members[0].endpoint
    services, volumes = {}, {}
    for p in members:
        keys = [f"./keys/{q.key}.key:{KEYS_DIR}/{q.key}.key:ro" for q in members]
        mounts = [f"./keys/{p.key}.key_secret:{KEYS_DIR}/{p.key}.key_secret:ro", *keys, f"run-{p.name}:{RUN_DIR}"]
        if p.role == "coordinator":
            mounts.append(f"./config.toml:{CONFIG_DIR}/config.toml:ro")
        # as the user who made the keys (their files are 0600 and theirs); /run/ssmarl is 1777 in the image
        services[p.name] = {"image": image, "user": f"{os.getuid()}:{os.getgid()}",
                            "command": p.command(config, run_id, coordinator),
                            "environment": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
                            "volumes": mounts, "restart": "on-failure:3"}
        volumes[f"run-{p.name}"] = {}
    return {"name": run_id, "services": services, "volumes": volumes}


def write_yaml(path: Path, documents: list[dict[str, Any]], header: str) -> None:
    """YAML as people write it: no anchors for repeated labels, multi-line strings as literal blocks."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))
    path.write_text(header + yaml.dump_all(documents, Dumper=Dumper, sort_keys=False))


@click.command(epilog="Example: ss-deploy k8s --agents 8 --env predation --out deploy/k8s/")
@click.argument("target", type=click.Choice(["k8s", "compose"]))
@run_options(out_help="Directory to write the manifests (or docker-compose.yml), keys/ and secrets into.")
@click.option("--image", default="ssmarl:latest", show_default=True,
              help="The container image (docker build -f deploy/Dockerfile -t ssmarl:latest .).")
@click.option("--run-id", default="ssmarl", show_default=True, help="Run id every process is started with.")
def main(target: str, config: RunConfig, out: Path, image: str, run_id: str) -> None:
    """Write the files that deploy a cluster with these run options on Kubernetes or Docker Compose.

    k8s: OUT/ssmarl.yaml (Services, a ConfigMap with config.toml, one StatefulSet per process) and
    OUT/secrets.yaml (one Secret per process with its private key, one with every public key; keep it out
    of version control). compose: OUT/docker-compose.yml and OUT/config.toml. Both make OUT/keys/ once.
    Apply with `kubectl apply -f OUT/secrets.yaml -f OUT/ssmarl.yaml`, or `docker compose -f
    OUT/docker-compose.yml up`.
    """
    try:
        import yaml  # noqa: F401
    except ImportError:
        raise click.ClickException("ss-deploy needs PyYAML: pip install 'ssmarl[deploy]'") from None
    out.mkdir(parents=True, exist_ok=True)
    keys = make_keys(out, processes(config, k8s=target == "k8s"))
    header = f"# ss-deploy {' '.join(sys.argv[1:])}\n"
    if target == "k8s":
        write_yaml(out / "ssmarl.yaml", k8s_manifests(config, run_id, image), header)
        write_yaml(out / "secrets.yaml", secrets(keys, processes(config, k8s=True)),
                   header + "# PRIVATE KEYS: never commit this file\n")
        click.echo(f"wrote {out}/ssmarl.yaml and {out}/secrets.yaml: kubectl apply -f {out}/secrets.yaml "
                   f"-f {out}/ssmarl.yaml", err=True)
    else:
        write_toml(config, out / "config.toml")
        write_yaml(out / "docker-compose.yml", [compose_file(config, run_id, image)], header)
        click.echo(f"wrote {out}/docker-compose.yml: docker compose -f {out}/docker-compose.yml up", err=True)

"""`ss-deploy`: Kubernetes manifests valid against the Kubernetes API schemas (offline, kubernetes-validate),
each pod mounting only its own secret key; a Compose file whose command lines, run for real with their
DNS names inside network namespaces (no container engine here), give a run bit-identical to ss-sim."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest

from coordinator.deploy import CONFIG_DIR, KEYS_DIR, RUN_DIR
from tests.netns import Network, unavailable
from tests.procs import Processes, script

yaml = pytest.importorskip("yaml", reason="ss-deploy needs ssmarl[deploy]")


def deploy(target: str, out: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([script("ss-deploy"), target, *options, "--out", str(out)], capture_output=True,
                          text=True, timeout=120)


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("algo", ["ss", "cl"])
def test_k8s_manifests_validate_against_the_kubernetes_api_schemas(tmp_path: Path, algo: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    done = deploy("k8s", tmp_path, "--agents", "8", "--env", "predation", "--algo", algo)
    assert done.returncode == 0, done.stderr
    manifests, secrets = documents(tmp_path / "ssmarl.yaml"), documents(tmp_path / "secrets.yaml")
    for doc in manifests + secrets:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)  # raises if invalid
    kinds = [d["kind"] for d in manifests]
    workloads = 2 + (algo == "cl") + 8
    assert kinds.count("StatefulSet") == workloads and kinds.count("ConfigMap") == 1
    assert len(secrets) == workloads + 1  # one private key each, and the public keys
    agents = next(d for d in manifests if d["kind"] == "Service" and d["metadata"]["name"] == "agents")
    assert agents["spec"]["clusterIP"] == "None" and agents["spec"]["publishNotReadyAddresses"] is True


def test_each_pod_mounts_only_its_own_secret_key_and_the_public_keys(tmp_path: Path) -> None:
    assert deploy("k8s", tmp_path, "--agents", "4", "--env", "cleanup").returncode == 0
    by_name = {d["metadata"]["name"]: d for d in documents(tmp_path / "secrets.yaml")}
    public = by_name.pop("ss-public-keys")["data"]
    assert sorted(public) == sorted(p.name for p in (tmp_path / "keys").glob("*.key"))
    for sts in (d for d in documents(tmp_path / "ssmarl.yaml") if d["kind"] == "StatefulSet"):
        name = sts["metadata"]["name"]
        pod = sts["spec"]["template"]["spec"]
        sources = next(v for v in pod["volumes"] if v["name"] == "keys")["projected"]["sources"]
        assert [s["secret"]["name"] for s in sources] == ["ss-public-keys", f"ss-key-{name}"]
        (own_file, own_key), = by_name[f"ss-key-{name}"]["data"].items()
        assert base64.b64decode(own_key) == (tmp_path / "keys" / own_file).read_bytes()
        command = pod["containers"][0]["command"]
        assert command[command.index("--keys") + 1] == KEYS_DIR
        assert pod["containers"][0]["readinessProbe"]["tcpSocket"]["port"] == pod["containers"][0]["ports"][0][
            "containerPort"]
        if name.startswith("agent-"):
            assert sts["spec"]["serviceName"] == "agents"
            assert command[command.index("--advertise") + 1] == f"tcp://{name}-0.agents:5570"
    assert (tmp_path / ".gitignore").read_text().count("secrets.yaml") == 1


def test_deploying_again_keeps_the_keys(tmp_path: Path) -> None:
    assert deploy("compose", tmp_path, "--agents", "2", "--env", "navigation").returncode == 0
    first = {p.name: p.read_bytes() for p in (tmp_path / "keys").iterdir()}
    assert deploy("compose", tmp_path, "--agents", "2", "--env", "navigation").returncode == 0
    assert {p.name: p.read_bytes() for p in (tmp_path / "keys").iterdir()} == first


def test_bad_deploy_options_are_one_line(tmp_path: Path) -> None:
    done = deploy("k8s", tmp_path, "--env", "nosuchworld")
    assert done.returncode != 0 and "nosuchworld" in done.stderr and "Traceback" not in done.stderr
    done = deploy("helm", tmp_path)
    assert done.returncode == 2 and "'helm' is not one of 'k8s', 'compose'" in done.stderr


OPTS = ["--env", "navigation", "--episodes", "8", "--batch", "2", "--seed", "3"]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))
def test_the_compose_command_lines_run_across_hosts_by_their_service_names(tmp_path: Path) -> None:
    """Each Compose service's command, on a host of its own whose /etc/hosts names the others (as Compose's
    DNS does), with its own run directory and only its own secret key: bit-identical to ss-sim."""
    out = tmp_path / "compose"
    assert deploy("compose", out, *OPTS, "--agents", "3").returncode == 0
    services = documents(out / "docker-compose.yml")[0]["services"]
    names = list(services)
    with Network(len(names)) as net, Processes(tmp_path / "logs") as procs:
        hosts = "127.0.0.1 localhost\n" + "".join(f"{net.address(k)} {n}\n" for k, n in enumerate(names))
        started = {}
        for k, name in enumerate(names):
            etc = Path("/etc/netns") / net.names[k]
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts)  # `ip netns exec` mounts it over /etc/hosts
            root = tmp_path / name
            for mount in services[name]["volumes"]:  # the service's mounts, as plain directories
                source, target = mount.split(":")[:2]
                if source.startswith("./"):
                    local = root / target.lstrip("/")
                    local.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(out / source, local)
            command = [part.replace(RUN_DIR, str(root / "run")).replace(KEYS_DIR, str(root / "keys"))
                       .replace(CONFIG_DIR, str(root / CONFIG_DIR.lstrip("/"))) for part in services[name]["command"]]
            assert sorted(p.name for p in (root / "keys").glob("*.key_secret")) == [
                next(m.split(":")[0].split("/")[-1] for m in services[name]["volumes"] if "key_secret" in m)]
            started[name] = procs.start(name, *net.cmd(k, script(command[0]), *command[1:]))
        try:
            for name, proc in started.items():
                assert proc.wait(timeout=400) == 0, procs.log(name)[-3000:]
        finally:
            for k in range(len(names)):
                shutil.rmtree(Path("/etc/netns") / net.names[k], ignore_errors=True)
    sim = subprocess.run([script("ss-sim"), *OPTS, "--agents", "3", "--out", str(tmp_path / "sim"), "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert sim.returncode == 0, sim.stderr
    metrics = tmp_path / "envserver" / "run" / "metrics.csv"
    assert metrics.read_bytes() == (tmp_path / "sim" / "metrics.csv").read_bytes()

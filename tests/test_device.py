"""--device cpu|auto|cuda: where the learners' nets run. CPU is the tested default; the CUDA run below
runs only where a GPU is present."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from agent.nets import pick_device
from agent.records import load_checkpoints
from protocol.run.config import resolve
from tests.procs import script

HAS_CUDA = torch.cuda.is_available()
RUN = ["--env", "predation", "--agents", "3", "--episodes", "8", "--batch", "2", "--seed", "3", "--no-progress"]


def test_auto_is_cuda_only_where_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA device is available to this process"):
        pick_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == pick_device("cuda") == torch.device("cuda")


def test_device_is_checked_and_may_change_when_a_run_resumes() -> None:
    with pytest.raises(ValueError, match="device must be one of"):
        resolve(None, {"device": "tpu"})
    assert resolve(None, {}).device == "cpu"


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    for command in ("ss-sim", "ss-cluster"):
        done = subprocess.run([script(command), *RUN, "--device", "cuda", "--out", str(tmp_path / command)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "Error: --device cuda: no CUDA device is available" in done.stderr
        assert not (tmp_path / command).exists()


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a GPU: auto is not the CPU here")
def test_auto_on_a_cpu_machine_is_the_cpu_run_bit_for_bit_and_resumes_as_cpu(tmp_path: Path) -> None:
    for device in ("cpu", "auto"):
        done = subprocess.run([script("ss-sim"), *RUN, "--device", device, "--out", str(tmp_path / device)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "auto/metrics.csv").read_bytes() == (tmp_path / "cpu/metrics.csv").read_bytes()
    more = subprocess.run([script("ss-sim"), *RUN[:5], "12", *RUN[6:], "--device", "cpu", "--out",
                           str(tmp_path / "auto")], capture_output=True, text=True, timeout=300)
    assert more.returncode == 0 and "resuming" in more.stderr, more.stderr


@pytest.mark.skipif(not HAS_CUDA, reason="no GPU on this machine")
def test_a_cuda_run_trains_and_its_checkpoint_loads_on_the_cpu(tmp_path: Path) -> None:
    done = subprocess.run([script("ss-sim"), *RUN, "--device", "cuda", "--out", str(tmp_path / "gpu")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    state = max(load_checkpoints(tmp_path / "gpu/agents/0/checkpoint.pt").items())[1]
    assert all(t.device.type == "cpu" for t in state["learner"]["policy"].values())

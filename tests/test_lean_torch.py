"""agent/lean_torch.py: the optimizer step without torch.compile's wrappers is the same update, bit for bit,
and a whole run never imports torch._dynamo."""

from __future__ import annotations

import subprocess
import sys

import torch

from agent import lean_torch


def test_the_lean_step_is_torchs_step_bit_for_bit() -> None:
    nets = []
    for _ in range(2):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
        nets.append((net, torch.optim.Adam(net.parameters(), lr=1e-2)))
    data = torch.randn(16, 4)
    for i in range(5):
        for which, (net, opt) in enumerate(nets):
            opt.zero_grad()
            net(data).square().mean().backward()
            lean_torch.step(opt) if which else opt.step()
    for a, b in zip(nets[0][0].parameters(), nets[1][0].parameters()):
        assert torch.equal(a, b)
    assert torch.equal(nets[0][1].state_dict()["state"][0]["exp_avg"], nets[1][1].state_dict()["state"][0]["exp_avg"])


def test_a_run_never_imports_the_compiler(tmp_path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from coordinator.sim import Simulation\n"
        "from protocol.run.config import resolve\n"
        "for algo in ('ss', 'cl', 'ps'):\n"
        f"    Simulation(resolve(None, {{'env': 'predation', 'agents': 3, 'episodes': 4, 'batch': 2, 'algo': algo,"
        f" 'checkpoint_every': 1}}), Path({str(tmp_path)!r}) / algo).run(progress=False)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"

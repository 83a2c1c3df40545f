"""Every command's --help teaches: an example line, and ss-sim/ss-cluster list every world and algorithm."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from envserver.worlds import REGISTRY
from protocol.run.config import ALGORITHMS
from tests.procs import script

COMMANDS = sorted(tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"])


def help_text(command: str) -> str:
    out = subprocess.run([script(command), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_an_example(command: str) -> None:
    text = help_text(command)
    assert "Example" in text and f"{command} " in text.split("Example", 1)[1], text


@pytest.mark.parametrize("command", ["ss-sim", "ss-cluster"])
def test_run_commands_list_every_world_and_algorithm(command: str) -> None:
    lines = help_text(command).splitlines()
    for name in (*REGISTRY, *ALGORITHMS):
        assert any(line.split()[:1] == [name] and len(line.split()) > 2 for line in lines), name

"""The fork server (coordinator/zygote.py) on its own: what a forked child inherits, and exit reports."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from coordinator.zygote import Zygote

ROOT = str(Path(__file__).resolve().parents[1])


def test_a_forked_child_holds_only_stdin_stdout_and_stderr(tmp_path: Path) -> None:
    """No fd of the zygote's (its request and report pipes, its SIGCHLD wakeup pipe) leaks into a child."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    zygote = Zygote(env, None)
    try:
        child = zygote.spawn([sys.executable, "-m", "tests.fd_report"], tmp_path / "child.log", env)
        assert child.wait(timeout=120) == 0
        zygote.wait_exit(0, timeout=120)  # the report of that exit has come in
        assert zygote.exits() == 1
    finally:
        zygote.close()
    # 0, 1, 2 and the one os.listdir opened to read /proc/self/fd
    assert (tmp_path / "child.log").read_text().split("\n")[0] == "[0, 1, 2, 3]"
    assert zygote.proc.returncode == 0

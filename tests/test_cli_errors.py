"""Every operational error of a process's command line is one line on stderr, exit code non-zero, no traceback."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import click
import pytest

from tests.procs import script


@pytest.fixture
def held_port():
    """A port some other process is listening on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


CASES = {
    "port in use (agent)": (["ss-agent", "--id", "0", "--bind", "tcp://127.0.0.1:{port}"], "Address already in use"),
    "port in use (env server)": (["ss-envserver", "--bind", "tcp://127.0.0.1:{port}"], "another process holds"),
    "port in use (coordinator)": (["ss-coordinator", "--bind", "tcp://127.0.0.1:{port}", "--out", "{tmp}/c"],
                                  "pick another --bind"),
    "bind bogus": (["ss-agent", "--id", "0", "--bind", "bogus"], "is not an endpoint"),
    "plaintext off loopback (agent)": (["ss-agent", "--id", "0", "--bind", "tcp://0.0.0.0:0"],
                                       "refusing to bind tcp://0.0.0.0:0 in plaintext"),
    "plaintext off loopback (env server)": (["ss-envserver", "--bind", "tcp://10.1.2.3:5000"], "--insecure"),
    "plaintext off loopback (coordinator)": (["ss-coordinator", "--bind", "tcp://0.0.0.0:5550", "--out", "{tmp}/c"],
                                             "give --keys DIR"),
    "coordinator not an endpoint": (["ss-agent", "--id", "0", "--coordinator", "not-an-endpoint"], "tcp://HOST:PORT"),
    "keys without our secret": (["ss-agent", "--id", "0", "--keys", "{tmp}"], "no secret key for agent0"),
    "out below a file": (["ss-agent", "--id", "0", "--out", "{tmp}/file/sub"], "not a directory"),
    "out below a file (coordinator)": (["ss-coordinator", "--out", "{tmp}/file/sub"], "not a directory"),
    "env module missing (coordinator)": (["ss-coordinator", "--env", "nosuchmodule:factory", "--out", "{tmp}/c"],
                                         "No module named 'nosuchmodule'"),
    "env module missing (sim)": (["ss-sim", "--env", "nosuchmodule:factory", "--out", "{tmp}/s"], "nosuchmodule"),
    "env module missing (cluster)": (["ss-cluster", "--env", "nosuchmodule:factory", "--out", "{tmp}/s"],
                                     "nosuchmodule"),
    "negative neighbour": (["ss-agent", "--id", "0", "--neighbors", "-2"], "agent ids are >= 0"),
    "itself as neighbour": (["ss-agent", "--id", "1", "--neighbors", "0,1"], "never this agent's own"),
    "neighbours not ids": (["ss-agent", "--id", "1", "--neighbors", "a,b"], "comma-separated agent ids"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_command_line_is_one_line(case: str, tmp_path: Path, held_port: int) -> None:
    (tmp_path / "file").write_text("")
    argv, says = CASES[case]
    argv = [a.format(port=held_port, tmp=tmp_path) for a in argv]
    done = subprocess.run([script(argv[0]), *argv[1:]], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert says in lines[0], lines[0]


def test_plaintext_rule_allows_loopback_keys_or_insecure(tmp_path: Path) -> None:
    from protocol.cliopts import refuse_open_plaintext

    for local in ("tcp://127.0.0.1:0", "tcp://127.4.5.6:9", "tcp://localhost:1", "tcp://[::1]:1", "ipc:///tmp/x"):
        refuse_open_plaintext(local, None, insecure=False)
    refuse_open_plaintext("tcp://10.0.0.1:5", tmp_path, insecure=False)  # --keys: CURVE on every socket
    refuse_open_plaintext("tcp://10.0.0.1:5", None, insecure=True)
    with pytest.raises(click.ClickException, match="plaintext"):
        refuse_open_plaintext("tcp://10.0.0.1:5", None, insecure=False)

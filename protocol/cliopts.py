"""The command-line options every process of a cluster shares (ss-agent, ss-envserver, ss-critic)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import click

from protocol.logsetup import Terminated, configure_logging, raise_on_sigterm

DEFAULT_COORDINATOR = "tcp://127.0.0.1:5550"

KEYS_OPTION = click.option(
    "--keys", "keys_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
    metavar="DIR", help="The run's CurveZMQ key directory (ss-keys DIR --agents N): encrypt every socket and "
                        "admit only the keys in DIR. Needs this process's NAME.key_secret and the others' "
                        "NAME.key. [default: plain TCP]")


def process_options(socket: str, peers: str, writes: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--coordinator --bind --advertise --out --run-id --keys -v; `socket` names what --bind binds, `peers`
    who dials it, `writes` what the process writes into --out."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed([
            click.option("--coordinator", default=DEFAULT_COORDINATOR, show_default=True,
                         help="Coordinator endpoint."),
            click.option("--bind", default="tcp://127.0.0.1:0", show_default=True,
                         help=f"Where to bind {socket} (port 0 = any free port)."),
            click.option("--advertise", default=None, metavar="ENDPOINT",
                         help=f"Endpoint {peers} should connect to, if not the bound one (NAT, containers, proxies)."),
            click.option("--out", type=click.Path(file_okay=False), default="runs/latest", show_default=True,
                         help=f"Run directory: writes {writes}."),
            click.option("--run-id", default="ssmarl", show_default=True,
                         help="Run id; messages of any other run are dropped. Must match the coordinator's."),
            KEYS_OPTION,
            click.option("-v", "--verbose", is_flag=True, help="Debug logging."),
        ]):
            command = option(command)
        return command

    return decorate


def run_process(label: str, verbose: bool, body: Callable[[], None]) -> None:
    """Run a cluster process's body with logging and SIGTERM handling; a runtime failure (a peer gone,
    a deadline passed, a stop) ends it with one clear line and exit code 1 instead of a traceback."""
    configure_logging(verbose)
    raise_on_sigterm()
    try:
        body()
    except (RuntimeError, TimeoutError, Terminated) as err:
        click.echo(f"{label}: {err}", err=True)
        sys.exit(1)

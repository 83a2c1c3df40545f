"""The command-line options every process of a cluster shares (ss-agent, ss-envserver, ss-critic)."""

from __future__ import annotations

import errno
import functools
import logging
import re
import sys
from pathlib import Path
from typing import Any, Callable

import click
import zmq

from protocol.logsetup import Terminated, configure_logging, raise_on_sigterm

DEFAULT_COORDINATOR = "tcp://127.0.0.1:5550"

INSECURE_OPTION = click.option(
    "--insecure", is_flag=True,
    help="Allow binding a non-loopback address without --keys (plaintext: anyone who reaches the port can "
         "read and send). [default: plaintext only on loopback]")

LOOPBACK = re.compile(r"tcp://(127\.\d+\.\d+\.\d+|localhost|\[::1\]):.*|ipc://.*")


def refuse_open_plaintext(bind: str, keys_dir: Path | None, insecure: bool) -> None:
    """Plaintext is for loopback: one line refusing any other --bind unless --keys or --insecure is given."""
    if keys_dir is None and not insecure and not LOOPBACK.fullmatch(bind):
        raise click.ClickException(
            f"refusing to bind {bind} in plaintext: anyone who reaches it could read and inject messages; "
            "give --keys DIR (make them with ss-keys) or, on a network you trust, --insecure")


TENSORBOARD_OPTION = click.option(
    "--tensorboard", is_flag=True,
    help="Also write TensorBoard event files: public metrics under DIR/tensorboard, each agent's private "
         "scalars under DIR/agents/<id>/tensorboard (needs ssmarl[tensorboard]).")

KEYS_OPTION = click.option(
    "--keys", "keys_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
    metavar="DIR", help="The run's CurveZMQ key directory (ss-keys DIR --agents N): encrypt every socket and "
                        "admit only the keys in DIR. Needs this process's NAME.key_secret and the others' "
                        "NAME.key. [default: plain TCP]")


def process_options(socket: str, peers: str, writes: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--coordinator --bind --advertise --out --run-id --keys -v; `socket` names what --bind binds, `peers`
    who dials it, `writes` what the process writes into --out."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def checked(*, insecure: bool, **options: Any) -> Any:
            refuse_open_plaintext(options["bind"], options["keys_dir"], insecure)
            return command(**options)

        for option in reversed([
            click.option("--coordinator", default=DEFAULT_COORDINATOR, show_default=True, callback=check_endpoint,
                         help="Coordinator endpoint."),
            click.option("--bind", default="tcp://127.0.0.1:0", show_default=True, callback=check_endpoint,
                         help=f"Where to bind {socket} (port 0 = any free port)."),
            click.option("--advertise", default=None, metavar="ENDPOINT", callback=check_endpoint,
                         help=f"Endpoint {peers} should connect to, if not the bound one (NAT, containers, proxies)."),
            click.option("--out", type=click.Path(file_okay=False), default="runs/latest", show_default=True,
                         help=f"Run directory: writes {writes}."),
            click.option("--run-id", default="ssmarl", show_default=True,
                         help="Run id; messages of any other run are dropped. Must match the coordinator's."),
            KEYS_OPTION,
            INSECURE_OPTION,
            click.option("-v", "--verbose", is_flag=True, help="Debug logging."),
        ]):
            checked = option(checked)
        return checked

    return decorate


def run_process(label: str, verbose: bool, body: Callable[[], None]) -> None:
    """Run a process's body with logging and SIGTERM handling. Any failure (a peer gone, a deadline passed, a
    stop, a port in use, a bad path, a missing key) ends it with one line naming the cause and the fix, and
    exit code 1; the traceback goes to the log only with -v."""
    configure_logging(verbose)
    raise_on_sigterm()
    try:
        body()
    except click.ClickException:
        raise  # a usage error: click prints it in one line
    except (Exception, Terminated) as err:
        logging.getLogger(label).debug("traceback", exc_info=True)
        click.echo(f"{label}: {explain(err)}", err=True)
        sys.exit(1)


def explain(err: BaseException) -> str:
    """One line: what went wrong and, where we know it, what to do about it."""
    if isinstance(err, (RuntimeError, TimeoutError, Terminated)):
        return str(err)  # ours: already a sentence with its cause
    if isinstance(err, zmq.ZMQError):
        hint = {errno.EADDRINUSE: "another process holds that port: pick another --bind (port 0 = any free port)",
                errno.EINVAL: "endpoints look like tcp://127.0.0.1:5550",
                errno.EADDRNOTAVAIL: "that address is not on this machine: bind one of its own"}.get(err.errno)
        return f"{err}" + (f": {hint}" if hint else "")
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return f"disk full writing {err.filename or 'the run directory'}: free space and rerun (the run resumes " \
               f"from its last checkpoint)"
    if isinstance(err, NotADirectoryError):
        return f"{err.filename}: part of this path is a file, not a directory: choose another --out"
    if isinstance(err, OSError):
        return f"{err.strerror or err}: {err.filename}" if err.filename else str(err)
    if isinstance(err, ImportError):
        return f"{err}: is it installed in this environment (pip install ...)?"
    return f"{type(err).__name__}: {err}"


def check_endpoint(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A click callback: refuse what is not a ZeroMQ endpoint (tcp://HOST:PORT, ipc://PATH) in one line."""
    if value is None or ENDPOINT.fullmatch(value):
        return value
    raise click.ClickException(f"{value!r} is not an endpoint: use tcp://HOST:PORT (e.g. tcp://127.0.0.1:5550) "
                               f"or ipc://PATH")


ENDPOINT = re.compile(r"tcp://[^\s:/]+:(\d{1,5}|\*)|tcp://\[[0-9a-fA-F:.]+\]:(\d{1,5}|\*)|ipc://\S+")

"""`ss-envserver`: the process that steps the shared world."""

from __future__ import annotations

import sys

import click

from protocol.logsetup import Terminated, configure_logging, raise_on_sigterm

DEFAULT_COORDINATOR = "tcp://127.0.0.1:5550"


@click.command(epilog="Example: ss-envserver --coordinator tcp://127.0.0.1:5550 --out runs/nav")
@click.option("--coordinator", default=DEFAULT_COORDINATOR, show_default=True, help="Coordinator endpoint.")
@click.option("--bind", default="tcp://127.0.0.1:0", show_default=True,
              help="Where to bind the env server's ROUTER (port 0 = any free port).")
@click.option("--advertise", default=None, metavar="ENDPOINT",
              help="Endpoint agents should connect to, if not the bound one (NAT, containers, proxies).")
@click.option("--out", type=click.Path(file_okay=False), default="runs/latest", show_default=True,
              help="Run directory: writes metrics.csv (public per-batch metrics).")
@click.option("--run-id", default="ssmarl", show_default=True, help="Run id; must match the coordinator's.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(coordinator: str, bind: str, advertise: str | None, out: str, run_id: str, verbose: bool) -> None:
    """Step the world for a cluster: each agent gets only its own observation, reward and neighbour mask.

    Gets the run config and the agent list from the coordinator, then plays every episode batch in
    lockstep; an agent whose action misses the step deadline gets the env's default action (logged,
    and counted in metrics.csv's missing_actions).
    """
    from envserver.server import serve
    from protocol.rundir import RunDir

    configure_logging(verbose)
    raise_on_sigterm()
    try:
        serve(coordinator, bind, run_id, RunDir(out), advertise=advertise)
    except (RuntimeError, TimeoutError, Terminated) as err:
        click.echo(f"ss-envserver: {err}", err=True)
        sys.exit(1)

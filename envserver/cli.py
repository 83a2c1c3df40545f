"""`ss-envserver`: the process that steps the shared world."""

from __future__ import annotations

from pathlib import Path

import click

from protocol.cliopts import TENSORBOARD_OPTION, process_options, run_process

@click.command(epilog="Example: ss-envserver --coordinator tcp://127.0.0.1:5550 --out runs/nav")
@process_options("the env server's ROUTER", "agents", "metrics.csv (public per-batch metrics)")
@TENSORBOARD_OPTION
def main(coordinator: str, bind: str, advertise: str | None, out: str, run_id: str, keys_dir: Path | None,
         tensorboard: bool, verbose: bool) -> None:
    """Step the world for a cluster: each agent gets only its own observation, reward and neighbour mask.

    Gets the run config and the agent list from the coordinator, then plays every episode batch in
    lockstep; an agent whose action misses the step deadline gets the env's default action (logged,
    and counted in metrics.csv's missing_actions).
    """
    from envserver.server import serve
    from protocol.run.rundir import RunDir

    run_process("ss-envserver", verbose, lambda: serve(coordinator, bind, run_id, RunDir(out), advertise=advertise,
                                                       keys_dir=keys_dir, tensorboard=tensorboard))

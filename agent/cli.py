"""`ss-agent`: one SS agent as its own OS process."""

from __future__ import annotations

from pathlib import Path

import click

from protocol.cliopts import TENSORBOARD_OPTION, process_options, run_process
from protocol.run.config import AUDIT_MODES

def parse_ids(text: str | None, me: int) -> tuple[int, ...] | None:
    """'2,4' -> (2, 4); '' -> () (no neighbours); None -> None (take the topology from the coordinator).
    One-line error for anything else, a negative id, or this agent itself."""
    if text is None:
        return None
    try:
        ids = tuple(sorted({int(x) for x in text.split(",") if x.strip()}))
    except ValueError:
        raise click.ClickException(f"--neighbors: expected comma-separated agent ids like 2,4, got {text!r}") from None
    if any(i < 0 for i in ids) or me in ids:
        raise click.ClickException(f"--neighbors {text}: agent ids are >= 0 and never this agent's own ({me})")
    return ids


@click.command(epilog="Example: ss-agent --id 1 --neighbors 0,2 --out runs/nav   (with `ss-coordinator --env "
                       "navigation --out runs/nav`, `ss-envserver --out runs/nav` and agents 0 and 2 running)")
@click.option("--id", "agent_id", type=click.IntRange(min=0), required=True, help="This agent's id (0..N-1).")
@click.option("--neighbors", default=None, metavar="IDS",
              help="Comma-separated ids this agent exchanges with, e.g. 2,4. Omit to use the topology the "
                   "coordinator gives (the config's static graph, or the env's per-step neighbourhoods).")
@process_options("this agent's PUB socket", "neighbours", "agents/<id>/{train.csv,checkpoint.pt,audit.log}")
@click.option("--audit", type=click.Choice(AUDIT_MODES), default="frames", show_default=True,
              help="Audit log keeps every outbound frame, every frame zlib-compressed (exact, smaller), or "
                   "only their hashes (long runs).")
@TENSORBOARD_OPTION
def main(agent_id: int, neighbors: str | None, coordinator: str, bind: str, advertise: str | None, out: str,
         run_id: str, keys_dir: Path | None, audit: str, tensorboard: bool, verbose: bool) -> None:
    """Run ONE agent: its own policy, suggestion nets, critic, rewards and RNG, in this process.

    It registers with the coordinator, gets the run config and its neighbours' endpoints, then trains:
    rollouts against the env server, and per update K exchange rounds of action distributions (DIST)
    and suggestions (SUGG) with its neighbours over ZeroMQ pub/sub. Nothing else leaves the process;
    every outbound byte is recorded in agents/<id>/audit.log.
    """
    from agent.process import AgentOptions, run_agent

    opts = AgentOptions(agent_id=agent_id, neighbors=parse_ids(neighbors, agent_id), coordinator=coordinator,
                        bind=bind, advertise=advertise, out=Path(out), run_id=run_id, audit=audit, keys=keys_dir,
                        tensorboard=tensorboard)
    run_process(f"ss-agent {agent_id}", verbose, lambda: run_agent(opts))

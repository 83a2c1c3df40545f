"""`ss-audit` (read and verify a run's audit logs) and `ss-keys` (make CurveZMQ keypairs)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from protocol.audit.compare import compare, comparison_json, format_comparison, run_traffic
from protocol.audit.cross import cross_check
from protocol.audit.log import LogFormatError, Record, iter_records
from protocol.audit.report import LogSource, Summary, describe_record, discover, format_table, summarise
from protocol.audit.verify import verify_log
from protocol.run.config import load_toml
from protocol.transport.keys import generate_keypair, run_key_names
from protocol.run.rundir import RunDir

AUDIT_EPILOG = """\b
Examples:
  ss-audit runs/pred8                    messages and bytes per agent, kind and destination
  ss-audit runs/pred8 --verify           also check every hash chain and payload; exit 1 on a failure
  ss-audit runs/pred8 --verify --json    the same tallies as JSON (on stdout; failures on stderr)
  ss-audit runs/pred8 --show 3 --kind SUGG --limit 5
                                         the first 5 suggestions agent 3 sent, decoded
  ss-audit --compare runs/ss runs/ippo   bytes per agent per episode by algorithm, and the ratio to SS
  ss-audit --cross-check runs/pred8      every message received was sent to that receiver (receipts vs audits)
"""


def _run_algo(run_dir: Path) -> str:
    """The run's algorithm from DIR/config.toml ("ss" when there is no config)."""
    path = RunDir(run_dir).config
    if not path.exists():
        return "ss"
    try:
        return str(load_toml(path).get("algo", "ss"))
    except ValueError as err:
        raise click.ClickException(str(err)) from None


def _label(source: LogSource) -> str:
    return f"agent {source.name}" if source.role == "agent" else source.name


def _show(source: LogSource, kind: str | None, limit: int) -> None:
    """Print up to `limit` decoded records of one log, optionally of one kind."""
    shown = 0
    for item in iter_records(source.path):
        if not isinstance(item, Record):
            click.echo(str(item))
        elif kind is None or item.kind == kind:
            if shown == limit:
                click.echo("... (more records; raise --limit)")
                return
            click.echo(describe_record(item) + "\n")
            shown += 1


def _verify(sources: list[LogSource], algo: str) -> bool:
    """Verify every log, printing every failure (and torn tails) to stderr; True if all pass."""
    ok = True
    for source in sources:
        result = verify_log(source.path, source.role, algo, source.src)
        if result.torn is not None:
            click.echo(f"{_label(source)}: {result.torn} (not a failure: a crash mid-write)", err=True)
        for failure in result.failures:
            click.echo(f"FAIL {_label(source)} ({source.path}): {failure}", err=True)
        ok = ok and result.ok
    return ok


@click.command(name="ss-audit", epilog=AUDIT_EPILOG)
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--compare", is_flag=True,
              help="Compare the RUN_DIRs: bytes per agent per episode (total and by kind) for each "
                   "algorithm, and the ratio to SS. With --json: {\"algos\": {ALGO: {...}}}.")
@click.option("--cross-check", "cross", is_flag=True,
              help="Match every receiver's receipts (agents/<id>/received.log, logs/<role>.received.log) against "
                   "the senders' audit logs: exit 1, naming sender, receiver and record, if anyone received a "
                   "message not addressed to it or one no audit log holds.")
@click.option("--verify", is_flag=True,
              help="Check every log's hash chain, frame hashes and payloads against what the algorithm "
                   "allows (kinds, and no rewards, values, parameters or observations); exit 1 on any failure.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"verified": bool, "agents": {"<id>": {"sent": {KIND: {"messages", "bytes"}}, '
                   '"to": {DEST: {KIND: ...}}}}} instead of tables.')
@click.option("--show", metavar="AGENT", help="Print the decoded records of one sender (an agent id, or "
                                              "'envserver' / 'coordinator').")
@click.option("--kind", metavar="KIND", help="With --show: only records of this kind (e.g. DIST).")
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True,
              help="With --show: print at most this many records.")
def audit_main(run_dirs: tuple[Path, ...], compare: bool, cross: bool, verify: bool, as_json: bool, show: str | None,
               kind: str | None, limit: int) -> None:
    """Report what every process of the run in RUN_DIR sent, from its audit log.

    Reads RUN_DIR/agents/<id>/audit.log and RUN_DIR/logs/<role>.audit.log, and the algorithm from
    RUN_DIR/config.toml. Prints, per sender and per destination, messages and bytes by kind.
    With --compare, several RUN_DIRs: what each algorithm shares, per agent per episode.
    """
    if compare:
        _compare(list(run_dirs), as_json)
        return
    if len(run_dirs) != 1:
        raise click.UsageError("give one RUN_DIR (several only with --compare)")
    run_dir = run_dirs[0]
    if cross:
        _cross_check(run_dir)
        return
    sources = discover(run_dir)
    if not sources:
        raise click.ClickException(f"no audit logs under {run_dir}")
    if show is not None:
        matching = [s for s in sources if s.name == show]
        if not matching:
            raise click.ClickException(f"no audit log for {show!r}; have {[s.name for s in sources]}")
        _show(matching[0], kind.upper() if kind else None, limit)
        return
    algo = _run_algo(run_dir)
    summaries: dict[str, Summary] = {}
    damaged = False
    for source in sources:
        try:
            summaries[source.name] = summarise(source.path)
        except LogFormatError as err:
            click.echo(f"FAIL {_label(source)} ({source.path}): {err}", err=True)
            damaged = True
    verified = _verify(sources, algo) if verify else False
    if as_json:
        agents = {s.name: summaries[s.name].to_json() for s in sources if s.role == "agent" and s.name in summaries}
        click.echo(json.dumps({"verified": verified and not damaged, "agents": agents}, indent=2))
    else:
        click.echo(f"run {run_dir} (algo {algo})\n")
        click.echo("\n\n".join(format_table(_label(s), summaries[s.name]) for s in sources if s.name in summaries))
        if verify and verified:
            click.echo(f"\nverified: {len(sources)} logs, every chain, frame and payload OK")
    if damaged or (verify and not verified):
        raise SystemExit(1)


def _cross_check(run_dir: Path) -> None:
    """Print the cross-check of senders' audit logs against receivers' receipts; exit 1 on any failure."""
    result = cross_check(run_dir)
    for failure in result.failures:
        click.echo(f"FAIL {failure}", err=True)
    pairs = ", ".join(f"{s} -> {r}: {n}" for (s, r), n in sorted(result.matched.items()))
    lost = sum(result.unreceived.values())
    click.echo(f"cross-check of {run_dir}: {result.sent} messages sent, {result.receipts} receipts; "
               f"{sum(result.matched.values())} received by their addressees ({pairs})")
    if lost:
        click.echo(f"{lost} sent messages have no receipt (lost to faults, or in flight at the end): "
                   + ", ".join(f"{s}: {n}" for s, n in sorted(result.unreceived.items())))
    if not result.ok:
        raise SystemExit(1)
    click.echo("every message received was sent to its receiver, by the sender's own audit log")


def _compare(run_dirs: list[Path], as_json: bool) -> None:
    """Print the per-algorithm comparison of the runs' agent traffic."""
    try:
        rows = compare([run_traffic(d) for d in run_dirs])
    except ValueError as err:  # also a damaged log (LogFormatError)
        raise click.ClickException(str(err)) from None
    click.echo(json.dumps(comparison_json(rows), indent=2) if as_json else format_comparison(rows))


@click.command(name="ss-keys")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--agents", type=click.IntRange(min=1), default=None,
              help="Make every key a run of N agents needs: coordinator, envserver, agent0..agent<N-1>.")
@click.option("--cl", is_flag=True, help="With --agents: also the central learner's key (algo cl).")
@click.option("--name", "names", multiple=True,
              help="Keypair name (repeat for several), e.g. --name agent0 --name envserver.")
def keys_main(directory: Path, agents: int | None, cl: bool, names: tuple[str, ...]) -> None:
    """Make CurveZMQ keypairs in DIRECTORY: NAME.key (public) and NAME.key_secret (mode 0600).

    Give every process of a run `--keys DIRECTORY` (ss-cluster --curve does all of this itself). Across
    machines, copy each process its own NAME.key_secret and everyone's public NAME.key files.

    \b
    Example:
      ss-keys keys/ --agents 8
      ss-keys keys/ --name agent8
    """
    names = (*(run_key_names(agents, cl) if agents else ()), *names)
    if not names:
        raise click.UsageError("give --agents N (a whole run's keys) or --name NAME")
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        try:
            public, secret = generate_keypair(directory, name)
        except FileExistsError:
            raise click.ClickException(f"{name}: a keypair already exists in {directory}; not overwriting it")
        click.echo(f"{name}: public {public}  secret {secret}")

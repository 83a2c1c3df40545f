"""Command lines of the run-level tools: `ss-sim`, `ss-cluster`, `ss-coordinator`.

All three take the same run options, resolved the same way (CLI > --config file > env defaults).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click

from protocol.cliopts import (INSECURE_OPTION, KEYS_OPTION, TENSORBOARD_OPTION, check_endpoint,
                              refuse_open_plaintext)
from protocol.run.config import (ALGORITHM_SUMMARIES, ALGORITHMS, AUDIT_MODES, DEVICES, PAPER_DEFAULTS, PRESETS, SUGGESTERS, RunConfig,
                                 load_toml, resolve, write_toml)
from protocol.run.rundir import RunDir


def catalogue(example: str) -> str:
    """The --help epilog of ss-sim and ss-cluster: one working example, then every world and algorithm."""
    from envserver.worlds import SUMMARIES

    worlds = "\n".join(f"  {name:<11} {text}" for name, text in SUMMARIES.items())
    algos = "\n".join(f"  {name:<11} {text}" for name, text in ALGORITHM_SUMMARIES.items())
    return (f"\b\nExample:\n  {example}\n\n\b\nWorlds (--env), or any PettingZoo ParallelEnv as "
            f"module:factory?key=value:\n{worlds}\n\n\b\nAlgorithms (--algo):\n{algos}")


RUN_OPTIONS = ("env", "agents", "episodes", "batch", "seed", "algo", "rho", "preset", "partners", "comm_every",
               "suggester", "audit", "device")


RUN_DIR_HELP = "Run directory to write (config.toml, metrics.csv, agents/<id>/...)."


def run_options(command: Callable[..., Any] | None = None, *, out_help: str = RUN_DIR_HELP) -> Any:
    """The options every run-level command shares; passes a resolved `config: RunConfig` (and `out`, whose
    help `out_help` gives: the run directory, unless the command writes something else there)."""
    if command is None:
        return functools.partial(run_options, out_help=out_help)

    @click.option("--env", default=None, metavar="NAME",
                  help=f"World: {', '.join(sorted(PAPER_DEFAULTS))}, or any PettingZoo ParallelEnv as "
                       "module:factory[?key=value&...] (e.g. mypkg.envs:parallel_env?horizon=50). "
                       "[default: predation]")
    @click.option("--agents", type=int, default=None,
                  help="Number of agents. [default: per env: predation 8, navigation 3, cleanup/harvest 4]")
    @click.option("--episodes", type=int, default=None,
                  help="Episodes in total; each update consumes --batch of them. [default: 3200]")
    @click.option("--batch", type=int, default=None,
                  help="Parallel worlds per update (episodes per update). [default: 16]")
    @click.option("--seed", type=int, default=None, help="Run seed: same seed, same numbers. [default: 0]")
    @click.option("--algo", type=click.Choice(ALGORITHMS), default=None,
                  help="ss = Suggestion Sharing; ippo = independent PPO (shares nothing); vs = value "
                       "(advantage) sharing; vps = critic-parameter consensus; ps = policy-parameter "
                       "consensus; imr = intrinsic moral reward (shares nothing); cl = central critic on the "
                       "sum of rewards (a learner process gets every agent's rewards). [default: ss]")
    @click.option("--rho", type=float, default=None,
                  help="SS penalty coefficient; 0 is the paper's ablation. [default: per env]")
    @click.option("--partners", type=int, default=None, metavar="M",
                  help="Exchange with M random neighbours per round (paper A.4); 0 = all. [default: 0]")
    @click.option("--comm-every", type=int, default=None, metavar="K",
                  help="Exchange only every K-th update; in between agents learn independently. [default: 1]")
    @click.option("--suggester", type=click.Choice(SUGGESTERS), default=None,
                  help="SS's suggestion nets: dense = a net per neighbour on every step (the paper); sparse = "
                       "the same nets only on the steps where that neighbour is active (same loss, less "
                       "work); shared = one trunk with a head per neighbour, on active steps. [default: dense]")
    @click.option("--audit", type=click.Choice(AUDIT_MODES), default=None,
                  help="What each process's audit log keeps of every message it sends: frames = the exact "
                       "frames; compressed = the same, zlib-compressed (--verify is as exact); hashes = "
                       "their SHA-256 only. [default: frames]")
    @click.option("--device", type=click.Choice(DEVICES), default=None,
                  help="Where each process runs its learner's nets: cpu; auto = a CUDA GPU where that process "
                       "has one, else the CPU; cuda = a GPU or a clear error. Results on a GPU are not "
                       "bit-identical to the CPU's. [default: cpu]")
    @click.option("--preset", type=click.Choice(PRESETS), default=None,
                  help="Hyperparameter table: 'default' (shipped) or 'paper' (the paper's Table 2).")
    @click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                  help="TOML file with any RunConfig field; command-line options override it.")
    @click.option("--out", type=click.Path(file_okay=False), required=True, help=out_help)
    @functools.wraps(command)
    def wrapper(config_file: str | None, out: str, **options: Any) -> Any:
        given = {name: options.pop(name) for name in RUN_OPTIONS}
        try:
            config = resolve(load_toml(config_file) if config_file else None, given)
        except ValueError as err:
            raise click.UsageError(str(err)) from err
        check_env(config)
        return command(config=config, out=Path(out), **options)

    return wrapper


def check_env(config: RunConfig) -> None:
    """Describe the world once, so that a world that cannot be made is one line now, not a traceback later."""
    from envserver.worlds import world_spec
    from protocol.cliopts import explain

    try:
        world_spec(config.env, config.agents, 1)
    except Exception as err:  # an import error, a bad factory, bad arguments: the env's own message
        raise click.ClickException(f"--env {config.env}: {explain(err)}") from None


def check_device(config: RunConfig) -> None:
    """--device cuda on a machine without one: one line now (ss-sim, ss-cluster: every process is here)."""
    if config.device == "cuda":
        from agent.nets import pick_device

        try:
            pick_device(config.device)
        except ValueError as err:
            raise click.UsageError(str(err)) from None


def check_resumable(config: RunConfig, out: Path) -> None:
    """Refuse to resume into a run directory whose config differs in more than `episodes` (or `device`:
    a run may continue on other hardware)."""
    existing_path = RunDir(out).config
    if not existing_path.exists():
        return
    existing = RunConfig.from_dict(load_toml(existing_path)).to_dict()
    wanted = config.to_dict()
    for free in ("episodes", "device"):
        existing.pop(free), wanted.pop(free)
    diff = sorted(k for k in wanted if wanted[k] != existing.get(k))
    if diff:
        raise click.UsageError(
            f"{out} holds a run with a different config ({', '.join(diff)}); "
            "use another --out, or --no-resume to overwrite it"
        )


@click.command(epilog=catalogue("ss-sim --env predation --agents 2 --episodes 48000 --out runs/p2"))
@run_options
@click.option("--no-resume", is_flag=True, help="Start over even if --out holds checkpoints.")
@click.option("--no-progress", is_flag=True, help="No progress bar (e.g. in logs).")
@click.option("--render", "render_to", type=click.Path(dir_okay=False), default=None,
              help="After training, play one episode with the trained policies and write it as a GIF.")
@TENSORBOARD_OPTION
def sim_main(config: RunConfig, out: Path, no_resume: bool, no_progress: bool, render_to: str | None,
             tensorboard: bool) -> None:
    """Train all agents and the world in ONE process with an in-memory exchange.

    The reference implementation of the algorithm: `ss-cluster` with the same options and seed must
    produce bit-identical metrics.csv and parameters. Resumes from the last checkpoint in --out.
    """
    from coordinator.sim import Simulation

    check_device(config)
    if not no_resume:
        check_resumable(config, out)
    sim = Simulation(config, out, tensorboard=tensorboard)
    if not no_resume and (done := sim.resume()):
        click.echo(f"resuming {out} from update {done} of {config.updates}", err=True)
    sim.run(progress=not no_progress)
    click.echo(f"done: {config.updates} updates ({config.updates * config.batch} episodes) -> {out}", err=True)
    if render_to:
        from coordinator.research.render import render_episode

        click.echo(f"episode GIF -> {render_episode(out, Path(render_to))}", err=True)


@click.command(epilog=catalogue("ss-cluster --env navigation --episodes 800 --out runs/nav"))
@run_options
@click.option("--no-resume", is_flag=True, help="Start over even if --out holds checkpoints.")
@click.option("--curve", is_flag=True,
              help="CurveZMQ on every socket: makes the run's keys in --out/keys (once) and admits only them.")
@click.option("--no-progress", is_flag=True, help="No progress bar (e.g. in logs).")
@click.option("--max-restarts", type=click.IntRange(min=0), default=3, show_default=True,
              help="How often each process that dies (kill -9, a crash) is restarted before the run stops.")
@TENSORBOARD_OPTION
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: every process on this machine, forked from a fork server this command starts. ray: Ray "
                   "places and supervises them on its nodes "
                   "(needs ssmarl[ray] and a run directory every node sees).")
@click.option("--ray-address", default=None, metavar="HOST:PORT",
              help="The Ray cluster to use (--backend ray). [default: $RAY_ADDRESS, else a new local Ray]")
@click.option("--ray-spread", type=click.Choice(["spread", "strict"]), default="spread", show_default=True,
              help="--backend ray: spread the processes over the nodes as far as they go, or strictly one per node.")
@click.option("--ray-cpus", type=click.FloatRange(min=0.0, min_open=True), default=1.0, show_default=True,
              help="--backend ray: CPUs each process reserves on its node.")
def cluster_main(config: RunConfig, out: Path, no_resume: bool, curve: bool, no_progress: bool,
                 max_restarts: int, tensorboard: bool, backend: str, ray_address: str | None, ray_spread: str,
                 ray_cpus: float) -> None:
    """Run a local cluster: the coordinator, the env server and one OS process per agent.

    Same options and same run directory as `ss-sim` (plus processes.json and logs/<process>.log);
    same seed gives bit-identical metrics.csv and parameters. Like `ss-sim` it resumes from the newest
    checkpoint every process in --out holds. A process that dies (kill -9, a crash) is restarted and
    rejoins the run (--max-restarts); Ctrl-C, a process reporting a failure, or restarts running out
    stops every process: the exit code is non-zero and the failing process's last log lines are printed.
    With --backend ray the same processes run on the nodes of a Ray cluster (README "Running across
    machines").
    """
    from coordinator.launcher import run_cluster

    ray = None
    if backend == "ray":
        from coordinator.ray_backend import RayPlacement

        ray = RayPlacement(ray_address, strict=ray_spread == "strict", cpus=ray_cpus)
    else:
        source = click.get_current_context().get_parameter_source
        given = [f"--{name.replace('_', '-')}" for name in ("ray_address", "ray_spread", "ray_cpus")
                 if source(name) is click.core.ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(f"{', '.join(given)} needs --backend ray")
        check_device(config)  # every process runs here (with Ray, each checks on its own node)
    if not no_resume:
        check_resumable(config, out)
    code = run_cluster(config, out, progress=not no_progress, resume=not no_resume, curve=curve,
                       max_restarts=max_restarts, tensorboard=tensorboard, ray=ray)
    if code == 0:
        click.echo(f"done: {config.updates} updates ({config.updates * config.batch} episodes) -> {out}", err=True)
    sys.exit(code)


@click.command(epilog="Example: ss-coordinator --env navigation --episodes 320 --out runs/nav")
@run_options
@click.option("--bind", default="tcp://127.0.0.1:5550", show_default=True, callback=check_endpoint,
              help="Endpoint to listen on.")
@click.option("--run-id", default="ssmarl", show_default=True,
              help="Run id; every process of the run must be started with the same one.")
@click.option("--no-resume", is_flag=True,
              help="Start over: tell every process to ignore (and replace) its checkpoints.")
@KEYS_OPTION
@INSECURE_OPTION
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def coordinator_main(config: RunConfig, out: Path, bind: str, run_id: str, no_resume: bool, keys_dir: Path | None,
                     insecure: bool, verbose: bool) -> None:
    """Rendezvous, directory and lifecycle for a cluster; never sees a learning payload.

    Waits for the env server and all --agents agents to register, sends each its directory (the
    config, the world spec, its neighbours' endpoints), broadcasts START once all are READY, and
    exits when all have finished. The run does not depend on it after START. Unless --no-resume, the
    run continues from the newest update of which every process holds a checkpoint (each reads its own).
    """
    from coordinator.server import Coordinator
    from protocol.cliopts import run_process
    from protocol.transport.keys import KeyRing
    from protocol.wire.messages import COORDINATOR_ID

    refuse_open_plaintext(bind, keys_dir, insecure)

    def serve() -> None:
        if not no_resume:
            check_resumable(config, out)
        rd = RunDir(out)
        rd.make(config.agents)
        write_toml(config, rd.config)  # at once, so scripts can read the resolved run (e.g. the agent count)
        keys = KeyRing(keys_dir, COORDINATOR_ID) if keys_dir is not None else None
        coordinator = Coordinator(config, run_id, bind, rd, resume=not no_resume, keys=keys)
        try:
            code = coordinator.run()
        finally:
            coordinator.close()
        if code:
            raise RuntimeError("the run ended with failures (see the log above)")

    run_process("ss-coordinator", verbose, serve)

"""`ss-eval RUN`: what a trained run's agents do, without training them further.

Loads each agent's policy pi_ii from the newest checkpoint that every agent of RUN holds (nothing else:
no critic, no suggestion net, no optimiser), plays N evaluation episodes in N parallel copies of the
run's world on a seed of its own, and prints the metrics training writes to metrics.csv. `--render` draws
one episode as a GIF; `--export DIR` writes each agent's policy as a standalone TorchScript file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np
import torch

from agent.ppo import derived_seed
from agent.policy import Policy, export_torchscript
from agent.records import load_checkpoints
from envserver.metrics import BatchReturns
from envserver.worlds import World, make_world
from protocol.run.checkpoints import resume_point
from protocol.run.config import RunConfig, load_toml
from protocol.run.rundir import RunDir
from protocol.wire.spec import WorldSpec

EVAL_SEED = 1000  # default world and acting seed of an evaluation (training used the run's own)


def load_policies(run_dir: RunDir, config: RunConfig, spec: WorldSpec, seed: int) -> tuple[int, list[Policy]]:
    """(update, each agent's policy) from the newest checkpoint every agent holds; agent i acts on its own
    seed derived from `seed`."""
    saved = [load_checkpoints(run_dir.checkpoint(i)) for i in range(config.agents)]
    for i, states in enumerate(saved):
        if not states:
            raise FileNotFoundError(f"{run_dir.checkpoint(i)}: no checkpoint; train the run first")
    update = resume_point({f"agent {i}": set(states) for i, states in enumerate(saved)})
    return update, [Policy.from_checkpoint(states[update]["learner"], i, spec, config, derived_seed(seed, i))
                    for i, states in enumerate(saved)]


def play(world: World, policies: list[Policy], greedy: bool) -> dict[str, object]:
    """One episode in each of the world's copies; the metrics.csv row of that batch (episode = B)."""
    returns = BatchReturns(world)
    result = world.reset()
    while not result.done:
        result = world.step(np.stack([p.act(result.obs[i], greedy) for i, p in enumerate(policies)]))
        returns.add(result.rewards)
    row = returns.row(world.spec.batch)
    row.pop("missing_actions")  # every agent acts in-process: nothing can be missing
    return row


def evaluate(run: Path, episodes: int, greedy: bool, seed: int) -> tuple[int, dict[str, object]]:
    """(checkpoint update, metrics) of `episodes` evaluation episodes of the run in `run`."""
    rd = RunDir(run)
    config = RunConfig.from_dict(load_toml(rd.config))
    world = make_world(config.env, config.agents, episodes, seed)
    update, policies = load_policies(rd, config, world.spec, seed)
    return update, play(world, policies, greedy)


def export_policies(run: Path, out: Path) -> list[Path]:
    """DIR/agent_<i>.pt for every agent: its policy alone, as TorchScript."""
    rd = RunDir(run)
    config = RunConfig.from_dict(load_toml(rd.config))
    spec = make_world(config.env, config.agents, 1, config.seed).spec
    _, policies = load_policies(rd, config, spec, config.seed)
    return [export_torchscript(p, spec, out / f"agent_{i}.pt") for i, p in enumerate(policies)]


@click.command(epilog="Example: ss-eval runs/demo/ss --episodes 64 --greedy --render ep.gif --export policies/")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--episodes", type=click.IntRange(min=1), default=32, show_default=True,
              help="Evaluation episodes, played as that many parallel copies of the world.")
@click.option("--greedy", is_flag=True, help="Each agent takes its most probable action (default: sample pi_ii).")
@click.option("--seed", type=int, default=EVAL_SEED, show_default=True,
              help="World and acting seed of the evaluation (the same seed gives the same numbers).")
@click.option("--render", "render_to", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also draw one episode of the trained agents as an animated GIF.")
@click.option("--export", "export_to", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write each agent's policy to DIR/agent_<id>.pt as standalone TorchScript "
                   "(torch.jit.load(path)(obs) -> action probabilities; .act(obs, greedy) -> actions).")
def main(run: Path, episodes: int, greedy: bool, seed: int, render_to: Path | None, export_to: Path | None) -> None:
    """Evaluate the trained agents of RUN (a run directory of ss-sim or ss-cluster).

    Prints the metrics training writes to metrics.csv (collective and normalized return, and the world's
    own), averaged over the evaluation episodes, with the policies of the newest checkpoint every agent holds.
    """
    torch.set_num_threads(1)
    if not RunDir(run).config.exists():
        raise click.ClickException(f"{run} is not a run directory (no config.toml)")
    try:
        update, row = evaluate(run, episodes, greedy, seed)
    except (FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    mode = "greedy" if greedy else "sampled"
    click.echo(f"{run}: policies of update {update}, {episodes} episodes, {mode} actions, seed {seed}")
    for name, value in row.items():
        if name != "episode":
            click.echo(f"  {name:<20} {value:.4f}")
    if render_to is not None:
        from coordinator.research.render import render_episode

        click.echo(f"episode GIF -> {render_episode(run, render_to, seed, greedy)}")
    if export_to is not None:
        paths = export_policies(run, export_to)
        click.echo(f"{len(paths)} TorchScript policies -> {export_to}/agent_<id>.pt")


if __name__ == "__main__":
    sys.exit(main())

"""`ss-demo`: Suggestion Sharing next to its own ablation, as two real local clusters, and what it shared.

Runs `ss-cluster` twice at once on Cooperative Predation with the shipped defaults, once as is (SS) and
once with rho = 0 (the paper's ablation: the same agents and exchange, no suggestion penalty), then prints
a summary a person reads in ten seconds: each run's final cooperation rate and normalized return, what
each SS agent sent (messages and bytes by kind, from its audit log) and the audit's verdict that no
reward, value, parameter or observation left any agent.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from coordinator.progress import RunProgress
from coordinator.research.summary import final_metrics
from protocol.audit.report import discover, summarise
from protocol.audit.verify import verify_log
from protocol.run.config import RunConfig, resolve
from protocol.run.csvlog import read_rows

DEFAULT_EPISODES = {2: 48000}  # 2 agents reach joint cooperation (cc ~0.9); other sizes: the run default
ENV_TRAFFIC = ("STEP", "RESET")
CONTROL = ("HELLO", "READY", "HEARTBEAT", "STOP")


@dataclass(frozen=True)
class Variant:
    """One of the two runs: its directory name, its label and its extra ss-cluster options."""

    name: str
    label: str
    options: tuple[str, ...]


VARIANTS = (Variant("ss", "SS", ()), Variant("rho0", "SS without suggestions (rho = 0)", ("--rho", "0")))


def cluster_command(variant: Variant, out: Path, agents: int, episodes: int, seed: int) -> list[str]:
    """The ss-cluster command line of one run."""
    return [str(Path(sys.executable).parent / "ss-cluster"), "--env", "predation", "--agents", str(agents),
            "--episodes", str(episodes), "--seed", str(seed), *variant.options, "--out", str(out / variant.name),
            "--no-progress"]


def run_both(out: Path, agents: int, episodes: int, seed: int, progress: bool) -> None:
    """Both clusters at once, one progress bar each; ClickException naming the run that failed."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C works even if started with SIGINT ignored
    out.mkdir(parents=True, exist_ok=True)
    procs, bars = {}, {}
    for position, variant in enumerate(VARIANTS):
        log = open(out / f"{variant.name}.log", "wb")
        procs[variant] = subprocess.Popen(cluster_command(variant, out, agents, episodes, seed), stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        config = resolve(None, {"env": "predation", "agents": agents, "episodes": episodes, "seed": seed,
                                "rho": 0.0 if variant.options else None})
        bars[variant] = (RunProgress(config, enabled=progress, position=position, label=variant.name), [0])
    try:
        while any(p.poll() is None for p in procs.values()):
            time.sleep(1.0)
            for variant, (bar, shown) in bars.items():
                shown[0] = advance(bar, out / variant.name / "metrics.csv", shown[0])
    except KeyboardInterrupt:
        raise click.ClickException("interrupted: both clusters stopped (rerun to resume them)") from None
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()  # ss-cluster stops its own processes on SIGTERM
            proc.wait()
        for bar, _ in bars.values():
            bar.close()
    for variant, proc in procs.items():
        if proc.returncode:
            tail = (out / f"{variant.name}.log").read_text(errors="replace").splitlines()[-15:]
            raise click.ClickException(f"the {variant.label} cluster failed (exit {proc.returncode}); "
                                       f"last lines of {out / variant.name}.log:\n" + "\n".join(tail))


def advance(bar: RunProgress, metrics: Path, shown: int) -> int:
    """Move the bar to the rows metrics.csv holds now; returns how many that is."""
    rows = read_rows(metrics) if metrics.exists() else []
    if len(rows) > shown:
        bar.advance(rows[-1], len(rows) - shown)
    return max(shown, len(rows))


def sent_line(agent: str, sent: dict) -> str:
    """'agent 0: DIST 1500 msgs 8.8 MB, SUGG ...; env server ...; control ...'."""
    def amount(kinds: tuple[str, ...]) -> tuple[int, int]:
        return (sum(sent[k].messages for k in kinds if k in sent), sum(sent[k].bytes for k in kinds if k in sent))

    learning = sorted(k for k in sent if k not in ENV_TRAFFIC + CONTROL)
    parts = [f"{k} {sent[k].messages} msgs {megabytes(sent[k].bytes)}" for k in learning]
    env_msgs, env_bytes = amount(ENV_TRAFFIC)
    ctl_msgs, ctl_bytes = amount(CONTROL)
    return (f"  agent {agent}: {', '.join(parts) or 'nothing to its neighbours'}; actions to the env server "
            f"{env_msgs} msgs {megabytes(env_bytes)}; control {ctl_msgs} msgs {megabytes(ctl_bytes)}")


def megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def summary(out: Path, agents: int, episodes: int, seed: int, seconds: float) -> tuple[str, bool]:
    """The closing summary, and whether every SS agent's audit log verified."""
    lines = [f"Suggestion Sharing demo: {agents}-agent Cooperative Predation, {episodes} episodes per run, "
             f"seed {seed}; each run a cluster of {agents + 2} processes ({seconds / 60:.1f} min)", "",
             f"  {'':<34}{'all cooperate (C-C)':>20}{'normalized return':>20}"]
    for variant in VARIANTS:
        final = final_metrics(out / variant.name)
        lines.append(f"  {variant.label:<34}{final['cc_rate']:>20.2f}{final['normalized_return']:>20.2f}")
    lines += ["  (mean of the last 10% of updates; C-C: every agent chases the prey at a step)", "",
              f"What each SS agent sent, from its own audit log ({out / 'ss'}/agents/<id>/audit.log):"]
    ok = True
    for source in (s for s in discover(out / "ss") if s.role == "agent"):
        lines.append(sent_line(source.name, summarise(source.path).sent))
        ok = ok and verify_log(source.path, "agent", "ss", source.src).ok
    lines.append("ss-audit --verify: every chain, frame and payload OK; no reward, value, parameter or observation "
                 "left any agent." if ok else f"ss-audit --verify FAILED: run `ss-audit --verify {out / 'ss'}`")
    return "\n".join(lines), ok


@click.command(name="ss-demo", epilog="Example: ss-demo --out runs/demo   (the 8-agent demo: ss-demo --agents 8)")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"),
              show_default=True, help="Directory of the two runs (OUT/ss, OUT/rho0) and their launcher logs.")
@click.option("--agents", type=click.IntRange(min=2), default=2, show_default=True,
              help="Predators; 8 is the paper's larger predation setting.")
@click.option("--episodes", type=click.IntRange(min=1), default=None,
              help="Episodes per run. [default: 48000 for 2 agents, else the run default]")
@click.option("--seed", type=int, default=0, show_default=True, help="Run seed of both runs.")
@click.option("--no-progress", is_flag=True, help="No progress bars (e.g. in logs).")
def main(out: Path, agents: int, episodes: int | None, seed: int, no_progress: bool) -> None:
    """Train SS and its rho = 0 ablation side by side, each as a real multi-process cluster, and summarise.

    Both runs resume from their checkpoints when rerun into the same --out.
    """
    episodes = episodes or DEFAULT_EPISODES.get(agents) or RunConfig().episodes
    start = time.monotonic()
    run_both(out, agents, episodes, seed, progress=not no_progress)
    text, ok = summary(out, agents, episodes, seed, time.monotonic() - start)
    click.echo(text)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

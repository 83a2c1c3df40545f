"""`ss-plot DIR... --out FIGDIR`: the paper's figures from run directories (PNG and PDF).

Runs are found under each DIR (any directory holding config.toml and metrics.csv) and grouped by
(env, algo label). The label is the directory name of an ss-experiment cell's parent
(`<env>/<label>/seed<N>`), the prefix of a `<label>-s<N>` directory (deploy/reproduce_predation.sh),
else the config's algo (with " rho=0" for the SS ablation). A figure whose runs are absent is skipped
with the reason.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import click
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

from coordinator.research.suggestions import approach_share, suggestion_mse  # noqa: E402
from coordinator.research.summary import decimals, final_metrics  # noqa: E402
from protocol.run.config import load_toml  # noqa: E402
from protocol.run.csvlog import read_rows  # noqa: E402
from protocol.run.rundir import RunDir  # noqa: E402

STUDY_FIELDS = ("partners", "comm_every")  # config fields of the partner / communication study (Fig. 8)
STUDY_DEFAULTS = {"partners": 0, "comm_every": 1}  # every neighbour, every update
PAPER_ORDER = ("ss", "rho0", "ss rho=0", "ippo", "vs", "vps", "ps", "imr", "cl")
CURVE_POINTS = 100  # curves are smoothed with a moving average of len/CURVE_POINTS updates

plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 9,
                     "figure.dpi": 110, "savefig.bbox": "tight", "axes.grid": True, "grid.alpha": 0.3})


@dataclass(frozen=True)
class Run:
    """One run directory with its config and metrics.csv rows."""

    path: Path
    label: str
    config: dict
    metrics: list[dict[str, str]]

    @property
    def env(self) -> str:
        return str(self.config.get("env", "?"))

    def column(self, name: str) -> np.ndarray:
        return np.array([float(r[name]) for r in self.metrics])


Group = tuple[str, str]  # (env, algo label)


def run_label(path: Path, config: dict) -> str:
    """The algo label of a run, from its directory layout, else from its config."""
    if re.fullmatch(r"seed\d+", path.name):
        return path.parent.name
    if match := re.fullmatch(r"(.+)-s\d+", path.name):
        return match.group(1)
    algo = str(config.get("algo", "ss"))
    return f"{algo} rho=0" if algo == "ss" and config.get("rho") == 0 else algo


def find_runs(dirs: list[Path]) -> list[Run]:
    """Every run directory at or under `dirs` that holds config.toml and a metrics.csv with rows."""
    found: dict[Path, Run] = {}
    for root in dirs:
        for metrics in sorted([root / "metrics.csv", *root.rglob("metrics.csv")]):
            path = metrics.parent.resolve()
            if path in found or not metrics.exists() or not RunDir(path).config.exists():
                continue
            rows = read_rows(metrics)
            if rows:
                config = load_toml(RunDir(path).config)
                found[path] = Run(path, run_label(path, config), config, rows)
    return list(found.values())


def group_runs(runs: list[Run]) -> dict[Group, list[Run]]:
    """Runs by (env, label), in a stable order."""
    groups: dict[Group, list[Run]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: (r.env, r.label, str(r.path))):
        groups[(run.env, run.label)].append(run)
    return dict(groups)


# ---- series over seeds ----------------------------------------------------------------------------


def smooth(y: np.ndarray) -> np.ndarray:
    """Moving average over len/CURVE_POINTS updates (shorter at the start)."""
    w = max(1, len(y) // CURVE_POINTS)
    c = np.cumsum(np.insert(y, 0, 0.0))
    return np.array([(c[i + 1] - c[max(0, i + 1 - w)]) / min(w, i + 1) for i in range(len(y))])


def stack(runs: list[Run], series: Callable[[Run], tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(episodes, [seeds, points]) of a per-run series, cut to the shortest run and smoothed."""
    pairs = [series(r) for r in runs]
    n = min(len(x) for x, _ in pairs)
    return pairs[0][0][:n], np.stack([smooth(y[:n]) for _, y in pairs])


def metric(name: str) -> Callable[[Run], tuple[np.ndarray, np.ndarray]]:
    return lambda run: (run.column("episode"), run.column(name))


def band(ax: plt.Axes, runs: list[Run], series: Callable, label: str, color: str | None = None,
         count: bool = True) -> None:
    """Mean over seeds as a line (SS's bolder), min-max over seeds as a band; `count` adds "(n=seeds)" to
    the legend label."""
    x, ys = stack(runs, series)
    line, = ax.plot(x, ys.mean(0), label=f"{label} (n={len(runs)})" if count else label, color=color,
                    lw=2.4 if label == "ss" else 1.4)
    if len(runs) > 1:
        ax.fill_between(x, ys.min(0), ys.max(0), color=line.get_color(), alpha=0.2, lw=0)


def in_paper_order(labels: Iterable[str]) -> list[str]:
    """Distinct algo labels, SS and its ablation first, then the baselines as the paper lists them, then
    any other label alphabetically."""
    rank = {label: i for i, label in enumerate(PAPER_ORDER)}
    return sorted(set(labels), key=lambda label: (rank.get(label, len(rank)), label))


def colours(labels: Iterable[str]) -> dict[str, str]:
    """One fixed colour per algo label across all figures."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {label: cycle[i % len(cycle)] for i, label in enumerate(in_paper_order(labels))}


def panels(n: int, width: float = 5.0, height: float = 3.6) -> tuple[plt.Figure, list[plt.Axes]]:
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, list(axes[0])


def save(fig: plt.Figure, out: Path, name: str) -> list[Path]:
    """Write FIGDIR/name.png and .pdf."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.tight_layout()
    for path in paths:
        fig.savefig(path)
    plt.close(fig)
    return paths


def episode_axis(ax: plt.Axes, ylabel: str) -> None:
    ax.set_xlabel("episode")
    ax.set_ylabel(ylabel)
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))


# ---- the figures: each returns the files written, or the reason it was skipped ----------------------

Result = list[Path] | str


def curves_by_env(groups: dict[Group, list[Run]], envs: list[str], column: str, what: str, out: Path,
                  name: str) -> list[Path]:
    """`column` vs episode, one panel per env in `envs`, one band (mean, min-max over seeds) per algo label;
    one legend of algo labels for all panels, each panel's seed count in its title."""
    labels = in_paper_order(label for _, label in groups)
    colour = colours(labels)
    fig, axes = panels(len(envs))
    for ax, env in zip(axes, envs):
        seeds = sorted({len(groups[(env, label)]) for label in labels if (env, label) in groups})
        for label in labels:
            if (env, label) in groups:
                band(ax, groups[(env, label)], metric(column), label, colour[label], count=False)
        n = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
        ax.set_title(f"{env}: {what} (n={n})")
        episode_axis(ax, column.replace("_", " "))
    handles = {h.get_label(): h for ax in axes for h in ax.get_legend_handles_labels()[0]}
    fig.tight_layout()
    fig.legend(handles.values(), handles.keys(), loc="center left", bbox_to_anchor=(1.0, 0.5))
    return save(fig, out, name)


def fig1_training_curves(groups: dict[Group, list[Run]], out: Path) -> Result:
    """Fig. 1: normalised return vs episode, one panel per env, mean and min-max band over seeds."""
    envs = sorted({env for env, _ in groups})
    return curves_by_env(groups, envs, "normalized_return", "training curves", out, "fig1_training_curves")


def fig2_final_bars(groups: dict[Group, list[Run]], out: Path) -> Result:
    """Fig. 2: final normalised return (mean of the last 10% of updates) per env and algo, mean +- std."""
    envs = sorted({env for env, _ in groups})
    colour = colours(label for _, label in groups)
    per_env = max(sum(1 for e, _ in groups if e == env) for env in envs)
    fig, axes = panels(len(envs), width=max(4.2, 0.7 * per_env))
    for ax, env in zip(axes, envs):
        labels = [label for label in in_paper_order(label for _, label in groups) if (env, label) in groups]
        finals = [[final_metrics(r.path)["normalized_return"] for r in groups[(env, label)]] for label in labels]
        means, stds = [np.mean(f) for f in finals], [np.std(f) for f in finals]
        ticks = [f"{label}\nn={len(f)}" for label, f in zip(labels, finals)]
        digits = decimals(means)
        ax.bar(ticks, means, yerr=stds, capsize=4, color=[colour[label] for label in labels])
        for x, (m, s) in enumerate(zip(means, stds)):  # the value just past the error bar's end
            ax.annotate(f"{m:.{digits}f}", (x, m - s if m < 0 else m + s), xytext=(0, -3 if m < 0 else 3),
                        textcoords="offset points", ha="center", va="top" if m < 0 else "bottom", fontsize=8)
        ax.margins(y=0.12)
        ax.set_title(f"{env}: final normalized return")
        ax.set_ylabel("mean of last 10% of updates")
        ax.axhline(0, color="black", lw=0.6)
    return save(fig, out, "fig2_final_returns")


def fig3_predation_rates(groups: dict[Group, list[Run]], out: Path) -> Result:
    """Fig. 3: C-C / C-D / D-D rates vs episode for 2-agent predation, one panel per algo."""
    pairs = {label: runs for (env, label), runs in groups.items()
             if env == "predation" and all("dd_rate" in r.metrics[0] for r in runs)}
    if not pairs:
        return "no 2-agent predation runs (metrics.csv with cc_rate/cd_rate/dd_rate)"
    fig, axes = panels(len(pairs), width=4.5)
    for ax, (label, runs) in zip(axes, pairs.items()):
        for name, legend, colour in (("cc_rate", "C-C", "tab:green"), ("cd_rate", "C-D", "tab:orange"),
                                     ("dd_rate", "D-D", "tab:red")):
            band(ax, runs, metric(name), legend, colour)
        ax.set_title(f"2-agent predation: {label}")
        episode_axis(ax, "share of steps")
        ax.set_ylim(-0.02, 1.02)
        ax.legend()
    return save(fig, out, "fig3_predation_rates")


def ablation_role(run: Run) -> str | None:
    """'SS', 'SS rho=0' or 'IPPO' by config (None for other algorithms)."""
    algo = run.config.get("algo")
    if algo == "ippo":
        return "IPPO"
    if algo == "ss":
        return "SS rho=0" if float(run.config.get("rho", 1.0)) == 0.0 else "SS"
    return None


def fig4_rho0_ablation(groups: dict[Group, list[Run]], out: Path) -> Result:
    """Fig. 4: SS vs SS rho=0 vs IPPO on predation: cc_rate and normalised return."""
    roles: dict[str, list[Run]] = defaultdict(list)
    for (env, _), runs in groups.items():
        for run in runs:
            if env == "predation" and (role := ablation_role(run)):
                roles[role].append(run)
    if "SS rho=0" not in roles or len(roles) < 2:
        return f"needs predation runs of SS with rho = 0 and of SS or IPPO (have: {sorted(roles) or 'none'})"
    roles = {role: roles[role] for role in ("SS", "SS rho=0", "IPPO") if role in roles}
    colour = {"SS": "tab:blue", "SS rho=0": "tab:purple", "IPPO": "tab:gray"}
    fig, axes = panels(2)
    for ax, name, ylabel in ((axes[0], "cc_rate", "C-C rate (all cooperate)"),
                             (axes[1], "normalized_return", "normalized return")):
        for role, runs in roles.items():
            band(ax, runs, metric(name), role, colour[role])
        ax.set_title(f"rho = 0 ablation: {ylabel}")
        episode_axis(ax, ylabel)
        ax.legend()
    return save(fig, out, "fig4_rho0_ablation")


# ---- Fig. 5: suggestion statistics ---------------------------------------------------------------


def fig5_suggestions(groups: dict[Group, list[Run]], out: Path) -> Result:
    """Fig. 5: suggestion MSE vs episode; and, where audit logs allow, the share of suggestions to approach."""
    mse = {g: [r for r in runs if suggestion_mse(r) is not None] for g, runs in groups.items()}
    mse = {g: runs for g, runs in mse.items() if runs}
    if not mse:
        return "no runs whose train.csv has suggestion_mse values (SS runs)"
    share = {g: [r for r in runs if approach_share(r) is not None] for g, runs in mse.items()}
    share = {g: runs for g, runs in share.items() if runs}
    colour = colours(f"{env}: {label}" for env, label in mse)  # one colour per env and algo
    fig, axes = panels(2 if share else 1, width=5.5)
    for (env, label), runs in mse.items():
        band(axes[0], runs, suggestion_mse, f"{env}: {label}", colour[f"{env}: {label}"])
    axes[0].set_title("MSE between policy and received suggestions")
    episode_axis(axes[0], "suggestion MSE (mean over agents)")
    axes[0].set_yscale("log")
    axes[0].legend()
    if share:
        for (env, label), runs in share.items():
            band(axes[1], runs, approach_share, f"{env}: {label}", colour[f"{env}: {label}"])
        axes[1].set_title("suggestions to approach the prey")
        episode_axis(axes[1], "share with p(approach) > 0.5")
        axes[1].set_ylim(-0.02, 1.02)
        axes[1].legend()
    return save(fig, out, "fig5_suggestions")


def fig8_partner_study(groups: dict[Group, list[Run]], out: Path) -> Result:
    """Fig. 8: training curves of one env and algo per study field that varies (m partners, communication
    period k), each value against the runs that keep the other field at its default."""
    runs = [r for rs in groups.values() for r in rs]
    fields = [f for f in STUDY_FIELDS if len({study_value(r, f) for r in runs}) > 1]
    if not fields:
        return f"no runs that differ in {' or '.join(STUDY_FIELDS)}"
    fig, axes = panels(len(fields))
    for ax, name in zip(axes, fields):
        for (env, algo, value), rs in sorted(study_groups(runs, name).items()):
            shown = "all" if name == "partners" and value == 0 else value
            band(ax, rs, metric("normalized_return"), f"{env} {algo}, {name}={shown}")
        ax.set_title(f"{'fewer partners' if name == 'partners' else 'less frequent communication'}")
        episode_axis(ax, "normalized return")
        ax.legend()
    return save(fig, out, "fig8_partner_study")


def fig_equality(groups: dict[Group, list[Run]], out: Path) -> Result:
    """Equality (1 - Gini of the agents' returns) vs episode, one panel per env that reports it (Cleanup and
    Harvest), mean and min-max band over seeds."""
    envs = sorted({env for (env, _), runs in groups.items() if all("equality" in r.metrics[0] for r in runs)})
    if not envs:
        return "no runs whose metrics.csv has an equality column (cleanup, harvest)"
    return curves_by_env(groups, envs, "equality", "equality", out, "fig_equality")


def study_groups(runs: list[Run], field: str) -> dict[tuple[str, str, int], list[Run]]:
    """Runs by (env, algo, value of `field`), among those that keep every other study field at its default."""
    others = [f for f in STUDY_FIELDS if f != field]
    groups: dict[tuple[str, str, int], list[Run]] = defaultdict(list)
    for r in runs:
        if all(study_value(r, f) == STUDY_DEFAULTS[f] for f in others):
            groups[(r.env, str(r.config.get("algo")), study_value(r, field))].append(r)
    return dict(groups)


def study_value(run: Run, field: str) -> int:
    """The run's partners / comm_every (older configs without the field: its default)."""
    return int(run.config.get(field, STUDY_DEFAULTS[field]))


FIGURES: dict[str, Callable[[dict[Group, list[Run]], Path], Result]] = {
    "1": fig1_training_curves, "2": fig2_final_bars, "3": fig3_predation_rates,
    "4": fig4_rho0_ablation, "5": fig5_suggestions, "8": fig8_partner_study, "equality": fig_equality,
}


def plot_all(dirs: list[Path], out: Path, only: tuple[str, ...] = ()) -> dict[str, Result]:
    """Every figure (or those in `only`) from the runs under `dirs`: figure -> files or skip reason."""
    groups = group_runs(find_runs(dirs))
    if not groups:
        raise ValueError(f"no run directories (config.toml + metrics.csv with rows) under {[str(d) for d in dirs]}")
    return {name: fig(groups, out) for name, fig in FIGURES.items() if not only or name in only}


@click.command(name="ss-plot", epilog="Example: ss-plot runs/paper --out runs/paper/figures   "
                                        "(after ss-experiment deploy/paper_comparison.toml)")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for the figures (PNG and PDF).")
@click.option("--figure", "only", multiple=True, type=click.Choice(sorted(FIGURES)),
              help="Only this figure (repeatable). [default: all]")
def main(dirs: tuple[Path, ...], out: Path, only: tuple[str, ...]) -> None:
    """Draw the paper's figures from the runs under DIRS (grid roots or run directories).

    \b
    Fig. 1 training curves (normalized return, mean and min-max over seeds, one panel per env)
    Fig. 2 final normalized return per env and algo (mean +- std over seeds)
    Fig. 3 C-C / C-D / D-D rates of 2-agent predation
    Fig. 4 the rho = 0 ablation (SS, SS rho=0, IPPO on predation)
    Fig. 5 suggestion MSE; share of suggestions to approach (predation clusters with frames audit logs)
    Fig. 8 the partner / communication-frequency study (runs with partners or comm_every)
    equality: 1 - Gini of the agents' returns vs episode (cleanup and harvest runs)
    """
    try:
        results = plot_all(list(dirs), out, only)
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    for name, result in results.items():
        title = f"Fig. {name}" if name.isdigit() else name.capitalize()
        if isinstance(result, str):
            click.echo(f"{title}: skipped: {result}")
        else:
            click.echo(f"{title}: {', '.join(str(p) for p in result)}")

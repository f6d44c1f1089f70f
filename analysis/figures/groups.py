"""Figures over groups of runs (matplotlib, Agg; each saved as PNG and PDF): speedup and efficiency against
computing ranks with the ideal line, accuracy against training time and bytes (mean over repeats, target line),
FedAvg accuracy and client outcomes per round, the staleness histogram. Per-run figures: :mod:`analysis.figures.run`.

Oversubscribed runs are drawn with hollow markers (their times include waiting for a core).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis.data.facts import applies  # noqa: E402
from analysis.stats.accuracy import evaluations  # noqa: E402
from analysis.stats.groups import EFFICIENCY_LIMIT, implausible, repeat_groups  # noqa: E402
from analysis.stats.intervals import estimate  # noqa: E402
from analysis.stats.metrics import LABELLED_OPTIONS, bytes_per_row, row_times, schedule, strategy_label  # noqa: E402
from analysis.views.pivot import shown, swept_options  # noqa: E402


def save(fig, out: Path, stem: str, tight: bool = True) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    if tight:
        fig.tight_layout()
    for p in paths:
        fig.savefig(p, dpi=120)
    plt.close(fig)
    return paths


def _marker_kw(oversubscribed: bool) -> dict:
    return {"markerfacecolor": "none"} if oversubscribed else {}


def group_labels(groups) -> list[str]:
    """Short legend labels: the run's strategy label (the options that change what it computes), then the options
    swept among the groups of the same strategy (as a sweep's pivot finds them), the rank count and the repeats:
    "localsgd, local_steps=8, 4 ranks (3 runs)". Options that differ only because the strategies differ are not
    listed (they made labels whole config dumps)."""
    by_strategy: dict[str, list] = {}
    for g in groups:
        by_strategy.setdefault(g.first.strategy, []).append(g.first)
    swept = {
        s: [k for k in swept_options(runs) if k not in ("ranks", *LABELLED_OPTIONS)] for s, runs in by_strategy.items()
    }
    labels = []
    for g in groups:
        run = g.first
        options = "".join(f", {k}={shown(run.config.get(k))}" for k in swept[run.strategy])
        runs = f"{g.n} run{'s' if g.n > 1 else ''}"
        labels.append(f"{strategy_label(run)}{options}, {run.world_size} ranks ({runs})")
    return labels


def group_style(i: int, count: int) -> dict:
    """Distinct colours for up to 20 groups (tab20), then line styles cycle too."""
    cmap = plt.get_cmap("tab10" if count <= 10 else "tab20")
    return {"color": cmap(i % cmap.N), "linestyle": ("-", "--", ":", "-.")[(i // cmap.N) % 4]}


def legend_columns(count: int) -> int:
    return 1 if count <= 4 else 2 if count <= 12 else 3


def legend_height(count: int) -> float:
    """Inches a legend of ``count`` entries below the axes takes (about 0.17 in a row at 7 pt)."""
    return 0.17 * -(-count // legend_columns(count))


def legend_below(fig, axes, count: int) -> None:
    """One legend for the figure, below the axes, in as many columns as fit: it never covers the data. The
    figure was made ``legend_height(count)`` inches taller for it."""
    handles, labels = axes[0].get_legend_handles_labels()
    chars_per_row = int(fig.get_figwidth() * 17)  # 7 pt text: about 17 characters an inch
    widest = max((len(label) for label in labels), default=1) + 6  # + the line sample and the gap
    ncol = max(1, min(legend_columns(count), chars_per_row // widest))  # long labels: fewer columns, never cut
    extra = 0.17 * -(-count // ncol) - legend_height(count)
    if extra > 0:  # more rows than the figure was made taller for
        fig.set_figheight(fig.get_figheight() + extra)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=7, frameon=False)
    fig.subplots_adjust(bottom=(0.55 + max(legend_height(count), 0.17 * -(-count // ncol))) / fig.get_figheight())


def speedup_plot(rows: list[dict], out: Path) -> list[Path]:
    """``rows`` from :func:`analysis.stats.groups.speedups`; groups run at one rank count only have no speedup and
    are left out (named in the title's count)."""
    fig = speedup_figure(rows)
    return save(fig, out, "speedup", tight=False) if fig is not None else []


def speedup_figure(rows: list[dict]):
    """The speedup and efficiency panels (None without a speedup). The efficiency axis reaches every point, and an
    efficiency above :data:`analysis.stats.groups.EFFICIENCY_LIMIT` is marked with a dagger, as in the table."""
    rows = [r for r in rows if r["speedup"] is not None]
    if not rows:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    ticks = set()
    for members in groups.values():
        members.sort(key=lambda r: r["compute_ranks"])
        r0 = members[0]
        label = f"{r0['strategy']} {r0['model']}/{r0['dataset']} ({r0['scaling']})"
        x = np.array([r["compute_ranks"] for r in members])
        ticks |= set(x.tolist())
        for ax, key in ((ax1, "speedup"), (ax2, "efficiency")):
            y = np.array([r[key].mean for r in members])
            err = np.nan_to_num(np.array([r[key].half for r in members]))
            (line,) = ax.plot(x, y, "-", label=label)
            for xi, yi, ei, r in zip(x, y, err, members):
                ax.errorbar(
                    xi, yi, yerr=ei, fmt="o", color=line.get_color(), capsize=3, **_marker_kw(r["oversubscribed"])
                )
                if ax is ax2 and implausible(r["efficiency"]):
                    ax.annotate("†", (xi, yi), textcoords="offset points", xytext=(5, 3), color="red")
        p0 = r0["baseline_ranks"]
        ax1.plot([p0, x.max()], [1.0, x.max() / p0], ":", color=line.get_color(), alpha=0.6)
    ax1.plot([], [], "k:", label="ideal (computing ranks / baseline)")
    ax2.axhline(1.0, color="k", ls=":")
    for ax in (ax1, ax2):
        ax.set_xticks(sorted(ticks))
        ax.set_xlabel("computing ranks")
    ax1.set(ylabel="speedup (samples/s ratio)", title="Speedup")
    top = max([1.2] + [1.1 * (r["efficiency"].mean + np.nan_to_num(r["efficiency"].half)) for r in rows])
    ax2.set(ylabel="parallel efficiency", title="Efficiency", ylim=(0, top))
    ax1.legend(fontsize=7)
    caption = "hollow markers: oversubscribed; bars: 95 % t CI over repeats (none with one run)"
    if any(implausible(r["efficiency"]) for r in rows):
        caption += f"; †: efficiency above {100 * EFFICIENCY_LIMIT:.0f} %, check the runs (see the speedup table)"
    fig.tight_layout()
    fig.subplots_adjust(bottom=0.2)  # room for the caption below the axis labels
    fig.text(0.01, 0.01, caption, fontsize=7)
    return fig


def _mean_curve(runs, x_of) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean x, mean accuracy, half-width of the accuracy's 95 % t interval over the repeats, as the tables
    pool them: :func:`analysis.stats.intervals.estimate`) at the evaluation steps all repeats share."""
    common = set.intersection(*(set(evaluations(r)[0].tolist()) for r in runs))
    steps = np.array(sorted(common), dtype=int)
    xs, accs = [], []
    for r in runs:
        s, a = evaluations(r)
        keep = np.isin(s, steps)
        rows = np.clip(steps - 1, 0, r.data["timing/step"].shape[1] - 1)  # step numbers count from 1, rows from 0
        xs.append(x_of(r)[rows])
        accs.append(a[keep])
    accs = np.array(accs)
    half = np.array([estimate(accs[:, i]).half for i in range(accs.shape[1])])
    return steps, np.mean(xs, axis=0), accs.mean(axis=0), np.nan_to_num(half)


def _cumulative_time(run) -> np.ndarray:
    return np.cumsum(row_times(run, warmup=0))


def _cumulative_mib(run) -> np.ndarray:
    return np.cumsum(bytes_per_row(run)) / 2**20


def accuracy_plot(runs, out: Path, target: float | None = None) -> list[Path]:
    """Test accuracy against training time and bytes moved, one line per repeat group (mean over repeats at
    the evaluations they share; band: the 95 % t interval, as in the tables)."""
    fig = accuracy_figure(runs, target)
    return save(fig, out, "accuracy", tight=False) if fig is not None else []


def accuracy_figure(runs, target: float | None = None):
    groups = [g for g in repeat_groups(runs) if all(evaluations(r)[0].size for r in g.runs)]
    if not groups:
        return None
    labels = group_labels(groups)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2 + legend_height(len(groups) + 1)))
    for i, g in enumerate(groups):
        style = group_style(i, len(groups))
        for ax, x_of in zip(axes, (_cumulative_time, _cumulative_mib)):
            steps, x, acc, half = _mean_curve(g.runs, x_of)
            ax.plot(x, 100 * acc, marker="o", ms=3, label=labels[i], **style, **_marker_kw(g.oversubscribed))
            if g.n > 1:
                low, high = np.clip(acc - half, 0, 1), np.clip(acc + half, 0, 1)  # an accuracy lies in [0, 100] %
                ax.fill_between(x, 100 * low, 100 * high, color=style["color"], alpha=0.12)
    for ax in axes:
        if target is not None:
            ax.axhline(100 * target, color="k", ls="--", lw=1, label=f"target {100 * target:g} %")
        ax.set_ylabel("test accuracy (%)")
    axes[0].set(xlabel="training time (s, evaluation left out)", title="Accuracy vs time")
    axes[1].set(xlabel="MiB moved (all ranks)", title="Accuracy vs bytes")
    fig.tight_layout()
    legend_below(fig, axes, len(groups) + 1)
    if any(g.n > 1 for g in groups):
        fig.text(0.01, 0.01, "bands: 95 % t CI over repeats; hollow markers: oversubscribed", fontsize=7)
    return fig


def fedavg_plot(runs, out: Path, target: float | None = None) -> list[Path]:
    """Per FedAvg group: accuracy per round (mean over repeats), and for the first group the clients finished,
    late and dropped per round (mean over repeats)."""
    fig = fedavg_figure(runs, target)
    return save(fig, out, "fedavg", tight=False) if fig is not None else []


def fedavg_figure(runs, target: float | None = None):
    groups = [g for g in repeat_groups(runs) if schedule(g.first) == "rounds"]
    if not groups:
        return None
    labels = group_labels(groups)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2 + legend_height(len(groups) + 1)))
    for i, g in enumerate(groups):
        if all(evaluations(r)[0].size for r in g.runs):
            steps, _, acc, _ = _mean_curve(g.runs, _cumulative_time)
            ax1.plot(steps, 100 * acc, marker="o", ms=3, label=labels[i], **group_style(i, len(groups)))
    if target is not None:
        ax1.axhline(100 * target, color="k", ls="--", lw=1, label=f"target {100 * target:g} %")
    ax1.set(xlabel="round", ylabel="test accuracy (%)", title="FedAvg: accuracy per round")
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    _client_bars(ax2, groups[0], len(groups))
    fig.tight_layout()
    legend_below(fig, [ax1], len(groups) + 1)
    return fig


def _client_bars(ax, g, count: int) -> None:
    """The first group's clients per round; the title says it is the first (blue) line's and how many are not
    shown, and the legend sits above the bars (it covered the last one)."""
    rounds = min(r.data["timing/step"].shape[1] for r in g.runs)
    bottom = np.zeros(rounds)
    for kind, color in (("finished", "tab:green"), ("late", "tab:orange"), ("dropped", "tab:red")):
        counts = np.mean([r.data[f"fedavg/{kind}"][0, :rounds] for r in g.runs], axis=0)
        ax.bar(np.arange(1, rounds + 1), counts, bottom=bottom, color=color, label=kind)
        bottom += counts
    ax.set(xlabel="round", ylabel="clients (mean over runs)")
    others = f"; the other {count - 1} not shown" if count > 1 else ""
    ax.set_title(f"Clients per round of the first line ({g.first.name}{others})", fontsize=9, pad=22)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)


def staleness_plot(runs, out: Path) -> list[Path]:
    """Share of applied gradients per staleness value, one bar group per run (side by side, no overlap)."""
    fig = staleness_figure(runs)
    return save(fig, out, "staleness") if fig is not None else []


def staleness_label(run) -> str:
    """ "ssp, s=2" (the bound means something only there), "ps async"; and the file."""
    if applies(run, "staleness"):
        return f"ssp, s={run.config.get('staleness')} ({run.name})"
    return f"{run.strategy} {run.config.get('ps_mode', '')} ({run.name})"


def staleness_figure(runs):
    """One panel per unit: ssp and sync count staleness in clocks, async in updates; one x axis would mix them."""
    runs = [r for r in runs if "ps/updates/staleness" in r.data and r.data["ps/updates/staleness"].size]
    runs = [r for r in runs if schedule(r) == "decoupled"]  # sync ps is 0 by construction: nothing to show
    if not runs:
        return None
    by_unit: dict[str, list] = {}
    for run in runs:
        by_unit.setdefault(run.units.get("ps/updates/staleness", "") or "steps", []).append(run)
    fig, axes = plt.subplots(1, len(by_unit), figsize=(7 * len(by_unit), 4), squeeze=False)
    for ax, (unit, members) in zip(axes[0], sorted(by_unit.items())):
        top = int(max(r.data["ps/updates/staleness"].max() for r in members))
        values = np.arange(top + 1)
        width = 0.8 / len(members)
        for i, run in enumerate(members):
            s = run.data["ps/updates/staleness"].astype(int)
            share = np.bincount(s, minlength=top + 1) / s.size
            ax.bar(values - 0.4 + width * (i + 0.5), 100 * share, width=width, label=staleness_label(run))
        ax.set_xticks(values)
        ax.set(xlabel=f"staleness ({unit})", ylabel="applied gradients (%)", title=f"Staleness in {unit}")
        ax.legend(fontsize=7)
    return fig

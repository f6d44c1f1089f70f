"""Compression figures: per block of runs that share strategy, model and ranks and include compressed runs, test
accuracy against training time and against MiB moved (log scale: compressed bytes span orders of magnitude), one
line per method (mean over repeats at the evaluations they share), the uncompressed run as the reference."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

from analysis.figures.groups import (
    _cumulative_mib,
    _cumulative_time,
    _marker_kw,
    _mean_curve,
    group_style,
    legend_below,
    legend_height,
    save,
)
from analysis.stats.accuracy import evaluations
from analysis.stats.groups import repeat_groups
from analysis.views.compress import _setting, compressible, method


def compression_plots(runs, out: Path, target: float | None = None) -> list[Path]:
    blocks: dict[tuple, list] = {}
    for g in repeat_groups(runs):
        if compressible(g.first):
            if all(evaluations(r)[0].size for r in g.runs):
                blocks.setdefault(_setting(g.first), []).append(g)
    paths = []
    for setting, groups in blocks.items():
        # something to compare: the dense run and at least one compressed run of the same workload
        methods = {method(g.first) for g in groups}
        if "none" in methods and len(methods) > 1:
            fig = block_figure(setting, sorted(groups, key=lambda g: method(g.first) != "none"), target)
            paths += save(fig, out, f"compression_{setting[0]}_{setting[1]}_n{setting[2]}", tight=False)
    return paths


def block_figure(setting: tuple, groups: list, target: float | None):
    strategy, model, ranks, _ = setting
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2 + legend_height(len(groups) + 1)))
    for i, g in enumerate(groups):
        style = group_style(i, len(groups)) | ({"color": "k", "lw": 2} if method(g.first) == "none" else {})
        label = f"{method(g.first)} ({g.n} run{'s' if g.n > 1 else ''})"
        for ax, x_of in zip(axes, (_cumulative_time, _cumulative_mib)):
            _, x, acc, _ = _mean_curve(g.runs, x_of)
            ax.plot(x, 100 * acc, marker="o", ms=3, label=label, **style, **_marker_kw(g.oversubscribed))
    for ax in axes:
        if target is not None:
            ax.axhline(100 * target, color="k", ls="--", lw=1, label=f"target {100 * target:g} %")
        ax.set_ylabel("test accuracy (%)")
    axes[0].set(xlabel="training time (s, evaluation left out)", title=f"{strategy} {model}, {ranks} ranks: vs time")
    axes[1].set(xlabel="MiB moved, all ranks (log)", title="vs bytes moved", xscale="log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 20, 0.5: not 2x10^1
    axes[1].xaxis.set_major_formatter(plain)
    axes[1].xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    fig.tight_layout()
    legend_below(fig, axes, len(groups) + 1)
    if any(g.oversubscribed for g in groups):
        fig.text(0.01, 0.01, "hollow markers: oversubscribed", fontsize=7)
    return fig

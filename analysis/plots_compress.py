"""Compression figures: per block of runs that share strategy, model and ranks and include compressed runs, test
accuracy against training time and against MiB moved (log scale: compressed bytes span orders of magnitude), one
line per method (mean over repeats at the evaluations they share), the uncompressed run as the reference."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from analysis.accuracy import evaluations
from analysis.groups import repeat_groups
from analysis.plots import (
    _cumulative_mib,
    _cumulative_time,
    _marker_kw,
    _mean_curve,
    group_style,
    legend_below,
    legend_height,
    save,
)
from analysis.views_compress import COMPRESSED, _setting, method


def compression_plots(runs, out: Path, target: float | None = None) -> list[Path]:
    blocks: dict[tuple, list] = {}
    for g in repeat_groups(runs):
        if g.first.strategy in COMPRESSED and not g.first.config.get("overlap"):
            if all(evaluations(r)[0].size for r in g.runs):
                blocks.setdefault(_setting(g.first), []).append(g)
    paths = []
    for setting, groups in blocks.items():
        if any(method(g.first) != "none" for g in groups):
            paths += _block_figure(setting, sorted(groups, key=lambda g: method(g.first) != "none"), out, target)
    return paths


def _block_figure(setting: tuple, groups: list, out: Path, target: float | None) -> list[Path]:
    strategy, model, ranks = setting
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
    fig.tight_layout()
    legend_below(fig, axes, len(groups) + 1)
    return save(fig, out, f"compression_{strategy}_{model}_n{ranks}", tight=False)

"""Progressive layer freezing over a run: the frozen prefix, the bytes sent and the communication share, step by
step, for the first run of each setting that froze (with the run without freezing of that setting beside it)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from analysis.figures.groups import save
from analysis.stats.metrics import bytes_per_row, compute_ranks, per_row, samples_per_row
from analysis.views.freezing import freeze_label, frozen, setting


def freezing_plots(runs, out: Path) -> list[Path]:
    paths, seen = [], set()
    ordered = sorted(runs, key=lambda r: r.name)
    for run in (r for r in ordered if frozen(r)):
        if (setting(run), freeze_label(run)) in seen:  # one figure per setting and way of freezing
            continue
        seen.add((setting(run), freeze_label(run)))
        plain = next((r for r in ordered if setting(r) == setting(run) and not frozen(r)), None)
        paths += save(freezing_figure(run, plain), out, f"freezing_{Path(run.path).stem}", tight=False)
    return paths


def comm_share_per_step(run) -> np.ndarray:
    """Communication time / step time per step, mean over the computing ranks (a parameter server's own time is
    serving, not communicating: the table's share counts the same ranks)."""
    ranks = compute_ranks(run)
    comm, step = per_row(run.data, "timing/comm")[ranks], per_row(run.data, "timing/step")[ranks]
    return np.mean(np.divide(comm, step, out=np.zeros_like(comm), where=step > 0), axis=0)


def smoothed(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` rows (localsgd sends only every tau-th step: a per-step line is a comb)."""
    if window <= 1:
        return values
    sums = np.cumsum(np.concatenate([[0.0], values]))
    lo = np.maximum(np.arange(1, len(values) + 1) - window, 0)
    return (sums[1:] - sums[lo]) / (np.arange(1, len(values) + 1) - lo)


def cache_share_per_step(run) -> np.ndarray:
    """Samples the cache served / samples trained, per step (all computing ranks)."""
    hits = np.asarray(run.data["freeze/cache_hits"]).sum(axis=0)
    return hits / samples_per_row(run)[: len(hits)]


def freezing_figure(run, plain=None):
    cached = "freeze/cache_hits" in run.data
    fig, axes = plt.subplots(3 + cached, 1, figsize=(7.5, 8.5 + 1.8 * cached), sharex=True)
    layers = np.asarray(run.data["timing/comm_bytes"]).shape[-1]
    steps = np.arange(1, np.asarray(run.data["timing/step"]).shape[1] + 1)
    axes[0].step(steps, np.asarray(run.data["freeze/frozen_layers"])[0], where="post")
    axes[0].set(ylabel=f"frozen layers (of {layers})", ylim=(0, layers + 0.5))
    axes[0].yaxis.set_major_locator(MaxNLocator(integer=True))
    tau = int(run.config.get("local_steps") or 1) if run.strategy == "localsgd" else 1
    mean = f"; bytes and share: mean over {tau} steps" if tau > 1 else ""
    axes[0].set_title(f"Progressive freezing: {run.strategy}, {run.config.get('model')}, {run.world_size} ranks\n"
                      f"{freeze_label(run)}{mean}", fontsize=10)  # fmt: skip
    for r, style in ((run, "-"), (plain, "--")):
        if r is None:
            continue
        label = f"{r.name} ({freeze_label(r) if frozen(r) else 'no freezing'})"
        x = np.arange(1, len(bytes_per_row(r)) + 1)
        axes[1].plot(x, smoothed(bytes_per_row(r), tau) / 2**20, style, label=label)
        axes[2].plot(x, 100 * smoothed(comm_share_per_step(r), tau), style)
    axes[1].set(ylabel="MiB sent per step\n(all ranks)")
    axes[1].set_ylim(bottom=0)
    axes[2].set(ylabel="communication\nshare (%)")
    axes[2].set_ylim(bottom=0)
    if cached:
        axes[3].plot(steps, 100 * cache_share_per_step(run))
        axes[3].set(ylabel="samples served\nfrom the cache (%)", ylim=(0, 105))
    axes[-1].set(xlabel="step")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.legend(*axes[1].get_legend_handles_labels(), loc="lower center", fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig

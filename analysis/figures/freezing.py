"""Progressive layer freezing over a run: the frozen prefix, the bytes sent and the communication share, step by
step, for the first run of each setting that froze (with the run without freezing of that setting beside it)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from analysis.figures.groups import save
from analysis.stats.metrics import bytes_per_row, per_row
from analysis.views.freezing import freeze_label, frozen, setting


def freezing_plots(runs, out: Path) -> list[Path]:
    paths, seen = [], set()
    ordered = sorted(runs, key=lambda r: r.name)
    for run in (r for r in ordered if frozen(r)):
        if (setting(run), freeze_label(run)) in seen:  # one figure per setting and way of freezing
            continue
        seen.add((setting(run), freeze_label(run)))
        plain = next((r for r in ordered if setting(r) == setting(run) and not frozen(r)), None)
        paths += save(freezing_figure(run, plain), out, f"freezing_{Path(run.path).stem}")
    return paths


def comm_share_per_step(run) -> np.ndarray:
    """Communication time / step time per step, mean over the ranks."""
    comm, step = per_row(run.data, "timing/comm"), per_row(run.data, "timing/step")
    return np.mean(np.divide(comm, step, out=np.zeros_like(comm), where=step > 0), axis=0)


def freezing_figure(run, plain=None):
    fig, axes = plt.subplots(3, 1, figsize=(7.5, 7.0), sharex=True)
    steps = np.arange(1, np.asarray(run.data["timing/step"]).shape[1] + 1)
    axes[0].step(steps, np.asarray(run.data["freeze/frozen_layers"])[0], where="post", label=run.name)
    axes[0].set(ylabel="frozen layers", title=f"Progressive freezing ({freeze_label(run)}), {run.strategy}, "
                f"{run.config.get('model')}, {run.world_size} ranks")  # fmt: skip
    axes[0].legend(fontsize=7)
    for r, style in ((run, "-"), (plain, "--")):
        if r is None:
            continue
        label = f"{r.name} ({freeze_label(r) if frozen(r) else 'no freezing'})"
        x = np.arange(1, len(bytes_per_row(r)) + 1)
        axes[1].plot(x, bytes_per_row(r) / 2**20, style, label=label)
        axes[2].plot(x, 100 * comm_share_per_step(r), style, label=label)
    axes[1].set(ylabel="MiB sent per step (all ranks)")
    axes[2].set(ylabel="communication share (%)", xlabel="step")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig

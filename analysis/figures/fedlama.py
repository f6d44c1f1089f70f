"""FedLAMA's averaging pattern: for one run, which layer was averaged in which round (layers x rounds), beside each
layer's discrepancy d_l where it was measured (log colour scale), so a reader sees which layers the rule left local
and why."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.ticker import MaxNLocator

from analysis.figures.groups import save


def fedlama_plots(runs, out: Path) -> list[Path]:
    paths = []
    for run in sorted(runs, key=lambda r: r.name):
        if "fedlama/averaged" in run.data and np.asarray(run.data["fedlama/averaged"]).size:
            paths += _pattern_figure(run, out)
    return paths


def _pattern_figure(run, out: Path) -> list[Path]:
    return save(pattern_figure(run), out, f"fedlama_pattern_{Path(run.path).stem}", tight=False)


def pattern_figure(run):
    """The figure (rounds numbered from 1, as every printout numbers them)."""
    averaged = np.asarray(run.data["fedlama/averaged"])[0].T  # (layers, rounds), rank 0's rows
    discrepancy = np.asarray(run.data["fedlama/discrepancy"])[0].T
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.asarray(run.data["layers/name"])]
    layers, rounds = averaged.shape
    height = 1.2 + 0.22 * layers
    fig, axes = plt.subplots(1, 2, figsize=(12, height), sharey=True)
    extent = (0.5, rounds + 0.5, layers - 0.5, -0.5)  # round r drawn at r = 1..R
    axes[0].imshow(averaged, aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest", extent=extent)
    axes[0].set(title="averaged (black) or kept local (white)", xlabel="round", ylabel="layer")
    shown = np.where(discrepancy > 0, discrepancy, np.nan)
    finite = shown[np.isfinite(shown)]
    norm = LogNorm(vmin=finite.min(), vmax=finite.max()) if finite.size else None
    image = axes[1].imshow(shown, aspect="auto", cmap="viridis", norm=norm, interpolation="nearest", extent=extent)
    axes[1].set(title="discrepancy d_l where averaged (log)", xlabel="round")
    fig.colorbar(image, ax=axes[1], fraction=0.04)
    axes[0].set_yticks(range(layers), names if layers <= 40 else [""] * layers, fontsize=7)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole rounds
    cfg = run.config
    fig.suptitle(
        f"FedLAMA, {run.name}: {cfg.get('model')}, T = {cfg.get('local_steps')}, PHI = {cfg.get('fedlama_phi')}"
    )
    fig.tight_layout()
    return fig

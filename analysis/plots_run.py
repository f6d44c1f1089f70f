"""Figures of one run: per-layer compute / packing / communication bars, and a per-rank timeline of a few steps
(needs ``bench train --trace``). A report over many runs draws these only for the runs it is asked to (or the
first few): one per run of a 250-run sweep is 500 files nobody opens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.patches import Patch

from analysis.metrics import compute_ranks, layer_split, per_layer_mean, phase_totals, row_unit, strategy_label
from analysis.plots import plt, save

PHASE_COLORS = {"forward": "tab:blue", "backward": "tab:orange", "comm": "tab:red"}


STEP_PARTS = (("wait", "tab:gray"), ("pack", "tab:purple"), ("compress", "tab:green"))
"""Per-step phases that belong to no layer: drawn as bars of their own beside the layers, on the same scale, so
a round whose largest part is waiting for the model does not read as compute-bound."""


def layer_bars(run, out: Path, warmup: int = 1) -> list[Path]:
    return save(layer_figure(run, warmup), out, f"layers_{Path(run.path).stem}")


def layer_figure(run, warmup: int = 1):
    """Stacked forward+backward and communication per layer (ms per step or round), then the step's own parts
    (waiting on peers, packing, compression: mean over computing ranks) as separate bars after a gap."""
    rows = layer_split(run, warmup)
    totals = phase_totals(run.data, compute_ranks(run), warmup)
    steps = max(1, run.data["timing/step"].shape[1] - warmup)
    comp = np.array([r["forward_s"] + r["backward_s"] for r in rows]) * 1e3
    comm = np.array([r["comm_s"] for r in rows]) * 1e3
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(rows) + 2) + 2.8, 4.2))
    x = np.arange(len(rows))
    ax.bar(x, comp, label="compute (forward + backward)", color="tab:blue")
    if "timing/exposed" in run.data:  # overlapped: only the exposed part adds to the step
        exposed = per_layer_mean(run.data, "timing/exposed", compute_ranks(run), warmup) * 1e3
        ax.bar(x, exposed, bottom=comp, label="communication not overlapped", color="tab:red")
        ax.bar(x, comm - exposed, bottom=comp + exposed, label="communication overlapped (hidden behind compute)",
               color="none", edgecolor="tab:red", hatch="///", linewidth=0.5)  # fmt: skip
        top = float(np.max(comp + np.maximum(comm, exposed), initial=0.0))
        ax.set_ylim(0, 1.05 * top or 1.0)  # an empty hatched bar on top would pin the axis to it
    else:
        ax.bar(x, comm, bottom=comp, label="communication", color="tab:red")
    parts = [(name, color) for name, color in STEP_PARTS if totals.get(name, 0.0) > 0]
    px = len(rows) + 1 + np.arange(len(parts))  # one slot of gap after the layers
    for xi, (name, color) in zip(px, parts):
        ax.bar(xi, 1e3 * totals[name] / steps, color=color, label=f"{PART_LABELS[name]} (whole step, no layer)")
    few = len(rows) <= 8
    names = [r["layer"] for r in rows] + [PART_LABELS[name] for name, _ in parts]
    ax.set_xticks(list(x) + list(px), names, rotation=0 if few else 90, fontsize=9 if few else 7)
    unit = row_unit(run)
    ax.set_ylabel(f"ms per {unit}")
    ax.set_xlabel("layer (input side first), then the step's parts that belong to no layer")
    ax.set_title(
        f"{run.name}: {strategy_label(run)} {run.config.get('model')}, {run.world_size} ranks; per {unit}, mean "
        "over computing ranks",
        fontsize=8,
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: never over a bar
    return fig


PART_LABELS = {"wait": "waiting", "pack": "packing", "compress": "compression"}


def timeline_plot(run, out: Path, first: int = 1, steps: int = 3) -> list[Path]:
    """Gantt chart: one row per rank, forward / backward / communication boxes of each layer, for steps
    ``first .. first + steps - 1``; the x axis spans exactly those steps."""
    if "timeline/step_start" not in run.data:
        return []
    starts_all = run.data["timeline/step_start"]
    ranks, total = starts_all.shape
    first = min(first, max(0, total - 1))
    last = min(total, first + steps)
    window = slice(first, last)
    fig, ax = plt.subplots(figsize=(10, 0.5 * ranks + 1.8))
    for rank in compute_ranks(run):
        for phase, color in PHASE_COLORS.items():
            begin = run.data[f"timeline/{phase}_start"][rank, window].ravel()
            length = run.data[f"timing/{phase}"][rank, window].ravel()
            keep = length > 0
            ax.broken_barh(list(zip(begin[keep], length[keep])), (rank - 0.4, 0.8), color=color)
    step_s = run.data["timing/step"][:, window]
    lo = float(starts_all[:, window][step_s > 0].min()) if (step_s > 0).any() else 0.0
    hi = float((starts_all[:, window] + step_s)[step_s > 0].max()) if (step_s > 0).any() else 1.0
    ax.set_xlim(lo - 0.02 * (hi - lo), hi + 0.02 * (hi - lo))
    ax.set(xlabel="seconds since the common start", ylabel="rank")
    ax.set_title(f"{run.name}: timeline of steps {first}..{last - 1}", fontsize=9)
    ax.set_yticks(range(ranks))
    handles = [Patch(color=c, label=p) for p, c in PHASE_COLORS.items()]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return save(fig, out, f"timeline_{Path(run.path).stem}")

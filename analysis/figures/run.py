"""Figures of one run: per-layer compute / packing / communication bars, and a per-rank timeline of a few steps
(needs ``bench train --trace``). A report over many runs draws these only for the runs it is asked to (or the
first few): one per run of a 250-run sweep is 500 files nobody opens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.patches import Patch

from analysis.figures.groups import plt, save
from analysis.stats.metrics import compute_ranks, layer_split, per_layer_mean, phase_totals, row_unit, strategy_label

PHASE_COLORS = {"forward": "tab:blue", "backward": "tab:orange", "comm": "tab:red"}


STEP_PARTS = (("wait", "tab:gray"), ("pack", "tab:purple"), ("compress", "tab:green"))
"""Per-step phases that belong to no layer: drawn as bars of their own beside the layers, on the same scale, so
a round whose largest part is waiting for the model does not read as compute-bound."""


def layer_bars(runs, out: Path, warmup: int = 1) -> list[Path]:
    figs = []
    for run, fig in zip(runs, layer_figures(runs, warmup)):
        figs += save(fig, out, f"layers_{Path(run.path).stem}")
    return figs


def layer_figures(runs, warmup: int = 1) -> list:
    """One figure per run. Runs of one model and row unit share one y scale (the tallest bar among them), so the
    figures of a sweep compare by eye: a bar twice as tall is twice the time in every one of them."""
    bars = [LayerBars.of(r, warmup) for r in runs]
    tops: dict[tuple, float] = {}
    for r, b in zip(runs, bars):
        tops[_scale_key(r)] = max(tops.get(_scale_key(r), 0.0), b.top)
    shared = {key: sum(_scale_key(r) == key for r in runs) for key in tops}
    figs = []
    for r, b in zip(runs, bars):
        key = _scale_key(r)
        fig = layer_figure(r, warmup, top=tops[key] if shared[key] > 1 else None, bars=b)
        if shared[key] > 1:
            note = f"y scale shared by the {shared[key]} layer figures of {key[0]} (per {key[1]}) in this report"
            fig.text(0.01, 0.01, note, fontsize=7)
        figs.append(fig)
    return figs


def _scale_key(run) -> tuple:
    return (run.config.get("model"), row_unit(run))


class LayerBars:
    """Heights (ms per step or round, mean over computing ranks) of one run's bars: compute, communication and its
    exposed part per layer, then the step's own parts (waiting, packing, compression) that belong to no layer."""

    def __init__(self, names, comp, comm, exposed, parts):
        self.names, self.comp, self.comm, self.exposed, self.parts = names, comp, comm, exposed, parts

    @classmethod
    def of(cls, run, warmup: int) -> LayerBars:
        rows = layer_split(run, warmup)
        totals = phase_totals(run.data, compute_ranks(run), warmup)
        steps = max(1, run.data["timing/step"].shape[1] - warmup)
        comp = np.array([r["forward_s"] + r["backward_s"] for r in rows]) * 1e3
        comm = np.array([r["comm_s"] for r in rows]) * 1e3
        exposed = None
        if "timing/exposed" in run.data:  # overlapped: only the exposed part adds to the step
            exposed = per_layer_mean(run.data, "timing/exposed", compute_ranks(run), warmup) * 1e3
        parts = [(n, c, 1e3 * totals[n] / steps) for n, c in STEP_PARTS if totals.get(n, 0.0) > 0]
        return cls([r["layer"] for r in rows], comp, comm, exposed, parts)

    @property
    def top(self) -> float:
        """The tallest bar (an overlapped layer's hatched part counts: it is drawn)."""
        return float(max(np.max(self.comp + self.comm, initial=0.0), max((h for *_, h in self.parts), default=0.0)))


def layer_figure(run, warmup: int = 1, top: float | None = None, bars: LayerBars | None = None):
    """Stacked forward+backward and communication per layer (ms per step or round), then the step's own parts
    (waiting on peers, packing, compression: mean over computing ranks) as separate bars after a gap. ``top``: the
    y axis' upper end (shared with other figures), else this run's tallest bar."""
    b = bars or LayerBars.of(run, warmup)
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(b.names) + 2) + 2.8, 4.2))
    x = np.arange(len(b.names))
    ax.bar(x, b.comp, label="compute (forward + backward)", color="tab:blue")
    if b.exposed is not None:
        ax.bar(x, b.exposed, bottom=b.comp, label="communication not overlapped", color="tab:red")
        ax.bar(x, b.comm - b.exposed, bottom=b.comp + b.exposed, color="none", edgecolor="tab:red", hatch="///",
               label="communication overlapped (hidden behind compute)", linewidth=0.5)  # fmt: skip
    else:
        ax.bar(x, b.comm, bottom=b.comp, label="communication", color="tab:red")
    px = len(b.names) + 1 + np.arange(len(b.parts))  # one slot of gap after the layers
    for xi, (name, color, height) in zip(px, b.parts):
        ax.bar(xi, height, color=color, label=f"{PART_LABELS[name]} (whole step, no layer)")
    ax.set_ylim(0, 1.05 * (top if top is not None else b.top) or 1.0)  # a hatched bar on top must not pin it
    few = len(b.names) <= 8
    names = b.names + [PART_LABELS[name] for name, *_ in b.parts]
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

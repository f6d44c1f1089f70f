"""Heterogeneous clients: test accuracy against the number of weak clients for each method (InclusiveFL's table as a
figure, mean and 95 % interval over seeds), and, per method, which share of each layer every tier trains."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from analysis.figures.groups import save
from analysis.stats.accuracy import final_accuracy
from analysis.stats.groups import repeat_groups
from analysis.views.tiers import TIER_NAMES, method, setting, tier_counts, tiered


def tiers_plots(runs, out: Path) -> list[Path]:
    groups = [g for g in repeat_groups(runs) if tiered(g.first)]
    if not groups:
        return []
    paths = save(accuracy_figure(groups), out, "tiers_accuracy")
    shown = {}
    for run in sorted((r for g in groups for r in g.runs), key=lambda r: r.name):
        if tier_counts(run)[1] + tier_counts(run)[2]:
            shown.setdefault((setting(run), method(run)), run)  # one run per setting and method (as labelled)
    stems = set()
    for (_, name), run in sorted(shown.items()):
        stem = "_".join(
            ["tiers_layers", str(run.config.get("model")), *re.findall(r"[a-z0-9]+", name.replace(".", ""))]
        )
        stem = stem if stem not in stems else f"{stem}_{Path(run.path).stem}"  # another setting, same method
        stems.add(stem)
        paths += save(layers_figure(run), out, stem)
    return paths


def accuracy_figure(groups):
    """One line per setting, method and count of moderate clients: x = weak clients, y = final test accuracy (%),
    error bars = 95 % interval (cut at 0 and 100 %); the setting's all-strong runs (FedAvg under every method) at 0."""
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    lines: dict[tuple, list] = {}
    all_strong: dict[tuple, tuple] = {}  # per setting: the runs without weaker clients
    for g in groups:
        key, counts = setting(g.first), tier_counts(g.first)
        if counts[1] + counts[2] == 0:
            all_strong[key] = (0, g.pooled(final_accuracy))
            continue
        lines.setdefault((key, method(g.first), counts[1]), []).append((counts[2], g.pooled(final_accuracy)))
    for key, point in all_strong.items():
        for line in [k for k in lines if k[0] == key and k[2] == 0] or [(key, "all strong", 0)]:
            lines.setdefault(line, []).append(point)
    for (key, name, moderate), points in sorted(lines.items()):
        points.sort(key=lambda p: p[0])
        x = [p[0] for p in points]
        y = np.array([100 * p[1].mean for p in points])
        half = np.array([100 * p[1].half if np.isfinite(p[1].half) else 0.0 for p in points])
        err = [y - np.clip(y - half, 0, 100), np.clip(y + half, 0, 100) - y]
        label = f"{key[0]}, {name}" + (f", {moderate} moderate" if moderate else "")
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="weak clients (beside the strong ones)", ylabel="test accuracy (%)")
    ax.set_title("Accuracy against the number of weak clients\n(mean and 95 % interval over seeds; 0 weak: FedAvg)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def layer_shares(run) -> np.ndarray:
    """(tiers, layers): the share of each layer's parameters a tier trains: 0 or 1 below and above its frozen
    prefix (partial training), the sub-model's share (width reduction)."""
    facts = run.attrs["client_tiers"]
    numel = np.asarray(run.data["layers/numel"], dtype=np.float64)
    shares = np.ones((len(TIER_NAMES), numel.size))
    for t, name in enumerate(TIER_NAMES):
        per_layer = facts[name].get("layer_parameters")
        if per_layer is not None and "width" in str(run.config.get("fl_algorithm")):
            shares[t] = np.asarray(per_layer, dtype=np.float64) / numel
        elif str(run.config.get("fl_algorithm")) == "partial":
            shares[t, : int(facts[name]["frozen_layers"])] = 0.0
    return shares


def layers_figure(run):
    shares = layer_shares(run)
    counts = tier_counts(run)
    kept = [t for t in range(len(TIER_NAMES)) if counts[t]]
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.asarray(run.data["layers/name"])]
    fig, ax = plt.subplots(figsize=(max(7.5, 0.22 * len(names) + 2), 1.8 + 0.45 * len(kept)))
    image = ax.imshow(shares[kept], aspect="auto", cmap="Greens", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(range(len(kept)), [f"{TIER_NAMES[t]} ({counts[t]})" for t in kept])
    ax.set_xticks(range(len(names)), names if len(names) <= 60 else [""] * len(names), rotation=90, fontsize=6)
    ax.set_title(f"Share of each layer's parameters each tier trains\n{method(run)}, {run.config.get('model')} "
                 f"({run.name})", fontsize=10)  # fmt: skip
    fig.colorbar(image, ax=ax, fraction=0.03)
    return fig

"""The links figure: per repeat group of runs on several nodes, the MiB sent per step inside nodes and across
them (stacked), so the effect of a hierarchical all-reduce or of more ranks per node is seen at a glance."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from analysis.figures.groups import save  # noqa: E402
from analysis.stats.groups import repeat_groups  # noqa: E402
from analysis.stats.metrics import across_share, strategy_label  # noqa: E402
from analysis.views.nodes import mib_per_row, node_count, spans_nodes  # noqa: E402


def links_plot(runs, out: Path, warmup: int = 1) -> list[Path]:
    groups = [g for g in repeat_groups(runs) if spans_nodes(g.first)]
    if not groups:
        return []
    labels = [  # the model too: two models' runs under one label would be drawn over each other on one bar
        f"{g.first.config.get('model')}: {strategy_label(g.first)}\n{g.first.world_size} ranks, "
        f"{node_count(g.first)} nodes"
        for g in groups
    ]
    total = [g.pooled(lambda r: mib_per_row(r, warmup)).mean for g in groups]
    across = [t * g.pooled(lambda r: across_share(r, warmup)).mean for t, g in zip(total, groups)]
    inside = [t - a for t, a in zip(total, across)]
    fig, ax = plt.subplots(figsize=(10, 0.7 * len(groups) + 1.8))
    ax.barh(labels, inside, color="#4c72b0", label="inside a node")
    ax.barh(labels, across, left=inside, color="#dd8452", label="across nodes")
    ax.set_xlabel(f"MiB sent per step by all ranks (mean over repeats; the first {warmup} step(s) left out)")
    ax.set_title("Communication split by link")
    ax.invert_yaxis()
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return save(fig, out, "links")

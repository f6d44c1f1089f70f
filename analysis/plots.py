"""Figures (matplotlib, Agg; each saved as PNG and PDF): speedup and efficiency against ranks with the ideal line,
stacked compute / communication / wait per layer, accuracy against time and against bytes moved, a per-rank
timeline of a window of steps, and the staleness histogram of ps/ssp runs."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from analysis.metrics import compute_ranks, layer_split  # noqa: E402


def _save(fig, out: Path, stem: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.tight_layout()
    for p in paths:
        fig.savefig(p, dpi=120)
    plt.close(fig)
    return paths


def speedup_plot(rows: list[dict], out: Path) -> list[Path]:
    if not rows:
        return []
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(f"{r['strategy']} {r['model']} {r['scaling']}", []).append(r)
    top = 1
    for label, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["ranks"])
        x = [r["ranks"] for r in rs]
        ax1.plot(x, [r["speedup"] for r in rs], "o-", label=label)
        ax2.plot(x, [r["efficiency"] for r in rs], "o-", label=label)
        top = max(top, max(x) / min(x))
    base = min(r["ranks"] for r in rows)
    ideal = np.array([base, base * top])
    ax1.plot(ideal, ideal / base, "k--", label="ideal")
    ax2.axhline(1.0, color="k", ls="--")
    ax1.set(xlabel="ranks", ylabel="speedup", title="Speedup")
    ax2.set(xlabel="ranks", ylabel="parallel efficiency", title="Efficiency", ylim=(0, 1.2))
    ax1.legend(fontsize=7)
    return _save(fig, out, "speedup")


def layer_bars(run, out: Path, warmup: int = 1) -> list[Path]:
    rows = layer_split(run, warmup)
    wait = run.data["timing/wait"][compute_ranks(run)].mean() / max(1, len(rows))
    names = [r["layer"] for r in rows]
    comp = np.array([r["forward_s"] + r["backward_s"] for r in rows])
    comm = np.array([r["comm_s"] for r in rows])
    fig, ax = plt.subplots(figsize=(max(6, 0.4 * len(rows)), 4))
    x = np.arange(len(rows))
    ax.bar(x, comp * 1e3, label="compute (fwd + bwd)")
    ax.bar(x, comm * 1e3, bottom=comp * 1e3, label="communication")
    ax.bar(x, np.full(len(rows), wait * 1e3), bottom=(comp + comm) * 1e3, label="wait (step's share)")
    ax.set_xticks(x, names, rotation=90, fontsize=6)
    ax.set(ylabel="ms per step", title=f"{run.strategy} {run.config.get('model')}, {run.world_size} ranks")
    ax.legend(fontsize=7)
    return _save(fig, out, f"layers_{Path(run.path).stem}")


def accuracy_plot(runs, out: Path) -> list[Path]:
    runs = [r for r in runs if r.data.get("metrics/test_accuracy") is not None and r.data["metrics/test_accuracy"].size]
    if not runs:
        return []
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for run in runs:
        steps = run.data["metrics/eval_step"].astype(int)
        acc = run.data["metrics/test_accuracy"]
        per_step = run.data["timing/step"].max(axis=0)
        t = np.cumsum(per_step)[np.minimum(steps, per_step.size - 1)]
        moved = np.cumsum(run.data["timing/comm_bytes"].sum(axis=(0, 2)))[np.minimum(steps, per_step.size - 1)]
        label = f"{run.strategy} n{run.world_size} ({Path(run.path).stem})"
        ax1.plot(t, acc, "o-", label=label)
        ax2.plot(moved / 2**20, acc, "o-", label=label)
    ax1.set(xlabel="training time (s)", ylabel="test accuracy", title="Accuracy vs time")
    ax2.set(xlabel="MiB moved (all ranks)", ylabel="test accuracy", title="Accuracy vs bytes")
    ax1.legend(fontsize=6)
    return _save(fig, out, "accuracy")


def timeline_plot(run, out: Path, first: int = 1, steps: int = 3) -> list[Path]:
    """Gantt chart: one row per rank, forward / backward / communication boxes of each layer (needs --trace)."""
    if "timeline/step_start" not in run.data:
        return []
    colors = {"forward": "tab:blue", "backward": "tab:orange", "comm": "tab:red"}
    series = {"forward": "timing/forward", "backward": "timing/backward", "comm": "timing/comm"}
    ranks, total = run.data["timeline/step_start"].shape
    last = min(total, first + steps)
    fig, ax = plt.subplots(figsize=(10, 0.5 * ranks + 1.5))
    for rank in range(ranks):
        for phase, name in series.items():
            starts = run.data[f"timeline/{phase}_start"][rank, first:last].ravel()
            durs = run.data[name][rank, first:last].ravel()
            keep = durs > 0
            ax.broken_barh(list(zip(starts[keep], durs[keep])), (rank - 0.4, 0.8), color=colors[phase])
    for phase, c in colors.items():
        ax.bar(0, 0, color=c, label=phase)
    ax.set(xlabel="seconds since the common start", ylabel="rank", title=f"Timeline, steps {first}..{last - 1}")
    ax.set_yticks(range(ranks))
    ax.legend(fontsize=7, loc="upper right")
    return _save(fig, out, f"timeline_{Path(run.path).stem}")


def staleness_plot(runs, out: Path) -> list[Path]:
    runs = [r for r in runs if "ps/updates/staleness" in r.data and r.data["ps/updates/staleness"].size]
    if not runs:
        return []
    fig, ax = plt.subplots(figsize=(6, 4))
    for run in runs:
        s = run.data["ps/updates/staleness"]
        bins = np.arange(-0.5, s.max() + 1.5)
        ax.hist(s, bins=bins, histtype="step", label=f"{run.strategy} ({run.units.get('ps/updates/staleness')})")
    ax.set(xlabel="staleness", ylabel="applied gradients", title="Staleness of applied gradients")
    ax.legend(fontsize=7)
    return _save(fig, out, "staleness")

"""``python -m analysis compare a.h5 b.h5``: what differs between two runs, config first, then the headline
metrics side by side with their ratio, so "why is b slower" starts from facts in the files."""

from __future__ import annotations

import json
import math
import sys

from analysis.data.load import ResultsError, load
from analysis.stats.accuracy import final_accuracy
from analysis.stats.metrics import bytes_per_row, comm_split, step_stats
from analysis.views.core import final_loss

METRICS = (
    ("ranks", lambda r, w: r.world_size, "{:.0f}"),
    ("steps (rounds) in the file", lambda r, w: r.data["timing/step"].shape[1], "{:.0f}"),
    ("median step or round (ms)", lambda r, w: 1e3 * step_stats(r, w).median_s, "{:.3f}"),
    ("samples/s", lambda r, w: step_stats(r, w).samples_per_s, "{:,.1f}"),
    ("communication share (%)", lambda r, w: 100 * comm_split(r, w).share, "{:.1f}"),
    ("MiB moved per step, all ranks", lambda r, w: mib_per_row(r, w), "{:.3f}"),
    ("final loss", lambda r, w: final_loss(r), "{:.4f}"),
    ("test accuracy (%)", lambda r, w: 100 * final_accuracy(r), "{:.2f}"),
)


def mib_per_row(run, warmup: int) -> float:
    """Bytes all ranks put on the wire per measured step (round), in MiB (``timing/comm_bytes``)."""
    per = bytes_per_row(run)
    measured = per[warmup:] if per.size > warmup else per
    return float(measured.mean()) / 2**20 if measured.size else 0.0


def config_differences(a: dict, b: dict) -> list[tuple[str, object, object]]:
    """(key, value in a, value in b) for every config key whose values differ (missing counts as None)."""
    keys = sorted(set(a) | set(b))
    return [(k, a.get(k), b.get(k)) for k in keys if json.dumps(a.get(k)) != json.dumps(b.get(k)) and k != "out"]


def compare(path_a: str, path_b: str, warmup: int = 1) -> int:
    try:
        a, b = load(path_a), load(path_b)
    except ResultsError as exc:
        print(f"analysis: {exc}", file=sys.stderr)
        return 2  # as report and tables exit on a file they cannot read
    micro = [p for p, r in ((path_a, a), (path_b, b)) if r.attrs.get("kind") == "micro"]
    if micro:
        print(f"analysis: {micro[0]} is a microbenchmark file: compare takes two training runs", file=sys.stderr)
        return 2
    print(f"a = {path_a}\nb = {path_b}\n")
    diffs = config_differences(a.config, b.config)
    if a.strategy != b.strategy and "strategy" not in (key for key, *_ in diffs):  # listed once
        diffs.insert(0, ("strategy", a.strategy, b.strategy))
    print("config differences:" if diffs else "config: identical (apart from --out)")
    for key, va, vb in diffs:
        print(f"  {key:24s} {va!s:>20}  ->  {vb!s}")
    print(f"\n{'metric':32s} {'a':>14s} {'b':>14s} {'b / a':>8s}")
    for name, fn, fmt in METRICS:
        va, vb = float(fn(a, warmup)), float(fn(b, warmup))
        ratio = vb / va if va and math.isfinite(va) and math.isfinite(vb) else math.nan
        print(f"{name:32s} {fmt.format(va):>14s} {fmt.format(vb):>14s} {ratio:8.3f}")
    return 0

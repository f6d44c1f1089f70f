"""Progressive layer freezing (``ring --freeze``; PipeTransformer, He et al. 2021): runs with and without freezing of
one setting side by side: step time, communication share, bytes per step, the frozen prefix at the end, accuracy
and time to the target accuracy."""

from __future__ import annotations

import numpy as np

from analysis.stats.accuracy import final_accuracy
from analysis.stats.groups import repeat_groups
from analysis.stats.metrics import bytes_per_row, comm_split, samples_per_row, step_stats
from analysis.views.core import POOL_NOTE, TTA_NOTE, WARMUP_NOTE, tta_cells, tta_columns
from analysis.views.tables import EST, INT, Column, Table


def frozen(run) -> bool:
    return "freeze/frozen_layers" in run.data


def frozen_at_end(run) -> float:
    """Layers frozen in the last step (rank 0's row: the same on every rank); 0 without freezing."""
    series = run.data.get("freeze/frozen_layers")
    return float(np.asarray(series)[0, -1]) if series is not None and np.asarray(series).size else 0.0


def cache_share(run, warmup: int) -> float:
    """The share of the samples trained after the warm-up whose frozen stages' output came from ``--freeze-cache``
    (all computing ranks); NaN without the cache."""
    hits = run.data.get("freeze/cache_hits")
    if hits is None:
        return float("nan")
    samples = samples_per_row(run)[warmup:].sum()
    return float(np.asarray(hits)[:, warmup:].sum() / samples) if samples else float("nan")


def setting(run) -> tuple:
    """What a run with freezing and its baseline without share: the ranks and every option that shapes the
    training (the workload, the data and its split, the batch, the optimizer and its schedule, the exchange)."""
    keys = ("strategy", "model", "dataset", "synthetic_shape", "partition", "alpha", "batch_size", "global_batch_size",
            "accumulate_steps", "steps", "optimizer", "lr", "lr_schedule", "lr_warmup_steps", "momentum",
            "weight_decay", "bucket_mb", "local_steps", "warmup_steps", "overlap", "servers", "ps_mode")  # fmt: skip
    return (run.world_size, *(str(run.config.get(k)) for k in keys))


def freeze_label(run) -> str:
    """``--freeze`` as the run took it: with auto, its decisions' cadence and unit."""
    spec = str(run.config.get("freeze") or "none")
    if spec.startswith("auto"):
        spec = f"{spec} every {run.config.get('freeze_every')} ({run.config.get('freeze_unit', 'layer')}s)"
    if run.config.get("freeze_cache"):
        spec += f" + cache ({float(run.config.get('freeze_cache_mb', 0)):g} MiB)"
    return spec


def freezing_table(runs, warmup: int, target: float | None = None) -> Table:
    groups = repeat_groups(runs)
    with_freezing = {setting(g.first) for g in groups if frozen(g.first)}
    groups = [g for g in groups if setting(g.first) in with_freezing]
    cols = [Column("strategy"), Column("model"), Column("ranks", INT), Column("freeze"), Column("n", INT)]
    cols += [Column("step median (ms)", EST, 2, 1e3), Column("comm share (%)", EST, 1, 100)]
    cols += [Column("MiB per step", EST, 3, 2**-20), Column("frozen at end", EST, 1)]
    cols += [Column("from cache (%)", EST, 1, 100), Column("test accuracy (%)", EST, 2, 100)]
    cols += tta_columns(target, "step") + [Column("runs")]
    rows = []
    for g in sorted(groups, key=lambda g: (setting(g.first), freeze_label(g.first))):
        run = g.first
        rows.append(
            [run.strategy, run.config.get("model"), run.world_size, freeze_label(run), g.n]
            + [g.pooled(lambda r: step_stats(r, warmup).median_s), g.pooled(lambda r: comm_split(r, warmup).share)]
            + [g.pooled(lambda r: float(np.mean(bytes_per_row(r)[warmup:]))), g.pooled(frozen_at_end)]
            + [g.pooled(lambda r: cache_share(r, warmup)), g.pooled(final_accuracy)]
            + tta_cells(g, target)
            + [g.label]
        )
    notes = [
        WARMUP_NOTE.format(warmup),
        POOL_NOTE,
        "comm share = communication time / step time (mean over computing ranks of the sums over measured steps); MiB "
        "per step = bytes all ranks sent, mean over measured steps; frozen at end = leading layers frozen in the last "
        "step; from cache = samples whose frozen stages' output --freeze-cache served, share of the samples trained "
        "in the measured steps",
    ]
    return Table("freezing", "Progressive layer freezing against training without it", cols, rows,
                 notes + ([TTA_NOTE] if target is not None else []))  # fmt: skip

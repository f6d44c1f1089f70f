"""The compression table: what each method sends per step against the dense ring, what compressing costs, and what
it does to accuracy and time (and bytes) to a target accuracy. It appears when some run compressed; the
uncompressed runs of the same strategy, model and ranks are its baseline rows."""

from __future__ import annotations

import json
import math

import numpy as np

from analysis.data.facts import applies
from analysis.stats.accuracy import final_accuracy
from analysis.stats.groups import repeat_groups, workload
from analysis.stats.metrics import compute_ranks, per_row, phase_totals, step_stats
from analysis.views.core import OVER_NOTE, TTA_NOTE, _notes, tta_cells, tta_columns
from analysis.views.tables import EST, FLAG, INT, Column, Table

COMPRESSION_OPTIONS = ("compress", "error_feedback")


def _setting(run) -> tuple:
    """Runs compared in one block: same strategy, model and ranks, and every other option of the workload equal
    (partition, placement, steps, ...), so a compressed run is set only against the dense run it differs from by
    its compression (a baseline with another partition or length was paired unsaid)."""
    rest = {k: v for k, v in workload(run).items() if k not in COMPRESSION_OPTIONS}
    key = json.dumps(rest, sort_keys=True, default=str)  # pragma: no mutate (config values are JSON already)
    return run.strategy, str(run.config.get("model")), run.world_size, key


def compressible(run) -> bool:
    """The run's strategy takes ``--compress`` (not with ``--overlap``, whose buckets leave uncompressed)."""
    return applies(run, "compress") and not run.config.get("overlap")


def method(run) -> str:
    return str(run.config.get("compress") or "none")


def bytes_per_step(run, warmup: int) -> float:
    """Bytes a computing rank sent per measured step (mean over those ranks)."""
    sent = per_row(run.data, "timing/comm_bytes")[compute_ranks(run), warmup:]
    if not sent.size:  # pragma: no mutate (no rows: refused earlier)
        return math.nan
    return float(sent.sum(axis=1).mean() / max(1, sent.shape[1]))


def dense_ratio(run, warmup: int) -> float:
    """Compressed bytes sent / the bytes they replace (the float32 ring's for the same buckets; fedavg: the
    uploads' float32 models), same steps (rounds) and ranks; 1 without compression."""
    if "compress/dense_bytes" not in run.data:
        return 1.0
    ranks = compute_ranks(run)
    dense = per_row(run.data, "compress/dense_bytes")[ranks, warmup:].sum()
    return float(per_row(run.data, "compress/sent_bytes")[ranks, warmup:].sum() / dense) if dense else math.nan


def compress_share(run, warmup: int) -> float:
    t = phase_totals(run.data, compute_ranks(run), warmup)
    return t["compress"] / t["step"] if t["step"] else math.nan


def residual(run) -> float:
    norm = run.data.get("compress/residual_norm")
    return float(np.asarray(norm)[compute_ranks(run), -1].mean()) if norm is not None and norm.size else 0.0


def compression_table(runs, warmup: int, target: float | None = None) -> Table:
    groups = [g for g in repeat_groups(runs) if compressible(g.first)]
    compressed = {_setting(g.first) for g in groups if method(g.first) != "none"}
    groups = [g for g in groups if _setting(g.first) in compressed]
    cols = [Column("model"), Column("ranks", INT), Column("strategy"), Column("method"), Column("error feedback")]
    cols += [Column("n", INT), Column("KiB sent per step", EST, 1, 2**-10), Column("of dense (%)", EST, 2, 100)]
    cols += [Column("step median (ms)", EST, 2, 1e3), Column("compression (% of step)", EST, 1, 100)]
    cols += [Column("residual norm", EST, 3), Column("test accuracy (%)", EST, 1, 100)]
    cols += tta_columns(target, "step") + [Column("oversubscribed", FLAG)]
    rows = []
    for g in sorted(groups, key=lambda g: (*map(str, _setting(g.first)), method(g.first))):
        run = g.first
        feedback = {None: "-", True: "on", False: "off"}[(run.attrs.get("strategy_info") or {}).get("error_feedback")]
        rows.append(
            [run.config.get("model"), run.world_size, run.strategy, method(run), feedback, g.n]
            + [g.pooled(lambda r: bytes_per_step(r, warmup)), g.pooled(lambda r: dense_ratio(r, warmup))]
            + [g.pooled(lambda r: step_stats(r, warmup).median_s), g.pooled(lambda r: compress_share(r, warmup))]
            + [g.pooled(residual), g.pooled(final_accuracy)]
            + tta_cells(g, target)
            + [g.oversubscribed]
        )
    return Table(
        "compression",
        "Compressed communication against the uncompressed run (same workload but for the compression)",
        cols,
        rows,
        _notes(
            warmup,
            "sent = bytes a computing rank put on the wire per step (round), indices, norms and lengths included "
            "(fedavg: the model downloads too); of dense = compressed bytes / the float32 bytes they replace "
            "(compress/sent_bytes / compress/dense_bytes: the ring's buckets, fedavg's client uploads)",
            "the sparse and quantised methods are all-gathered, so each rank forwards p - 1 payloads: their share "
            "of dense grows with p (top-k R at p ranks: about p R)",
            "compression = compress + decompress time (timing/compress), not communication; residual norm = the "
            "error-feedback memory's L2 norm after the last step (0: no error feedback)",
            OVER_NOTE,
        )
        + ([TTA_NOTE] if target is not None else []),
    )

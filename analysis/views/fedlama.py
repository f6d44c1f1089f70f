"""The layer-wise aggregation table (FedLAMA, Lee et al. 2023, Table 1's shape): FedAvg and FedLAMA runs that count
local work in steps, per setting (model, clients, fraction, partition), with the share of the model averaged per
round and the communication against FedAvg with the smallest local step count T of the setting, at equal local
steps: a run with T' local steps per round averaging a share s of the model costs s T / T' of FedAvg(T)."""

from __future__ import annotations

import math

import numpy as np

from analysis.data.facts import schedule
from analysis.stats.accuracy import final_accuracy
from analysis.stats.groups import repeat_groups
from analysis.stats.metrics import strategy_label
from analysis.views.core import POOL_NOTE, TTA_NOTE, tta_cells, tta_columns
from analysis.views.tables import EST, INT, NUM, Column, Table


def averaged_share(data) -> float:
    """sum over rounds and layers of (averaged x dim_l) / (rounds x model size), from a run's datasets: FedLAMA's
        communication ratio against FedAvg with the same T (our definition: the share of parameter bytes averaged,
    as the paper's section 4 compares communication cost); 1 for any other run."""
    averaged = data.get("fedlama/averaged")
    if averaged is None:
        return 1.0
    pattern = np.asarray(averaged)[0]  # rank 0's rows: (rounds, layers)
    pattern = pattern.astype(np.float64)  # pragma: no mutate (@ with float dims is float anyway)
    dims = np.asarray(data["layers/numel"], dtype=np.float64)  # pragma: no mutate (float either way)
    return float((pattern @ dims).sum() / (pattern.shape[0] * dims.sum())) if pattern.size else math.nan


def _setting(run) -> tuple:
    keys = ("model", "dataset", "clients", "fraction", "partition", "alpha")
    return run.world_size, *(str(run.config.get(k)) for k in keys)


def _layerwise(run) -> bool:
    """The run averaged layers at their own intervals: it recorded FedLAMA's per-layer pattern."""
    return "fedlama/averaged" in run.data


def _steps(run) -> int:
    return int(run.config.get("local_steps") or 0)


def fedlama_table(runs, target: float | None = None) -> Table:
    groups = [g for g in repeat_groups(runs) if schedule(g.first) == "rounds" and _steps(g.first) > 0]
    with_lama = {_setting(g.first) for g in groups if _layerwise(g.first)}
    groups = [g for g in groups if _setting(g.first) in with_lama]
    least = {}
    for g in groups:
        least[_setting(g.first)] = min(least.get(_setting(g.first), 1 << 30), _steps(g.first))  # pragma: no mutate
    cols = [Column("model"), Column("K", INT), Column("C", NUM), Column("ranks", INT), Column("algorithm")]
    cols += [Column("T", INT), Column("PHI", INT), Column("n", INT), Column("rounds", INT)]
    cols += [Column("averaged per round (%)", EST, 1, 100), Column("communication vs FedAvg(T min) (%)", EST, 1, 100)]
    cols += [Column("test accuracy (%)", EST, 2, 100)] + tta_columns(target, "round")
    rows = []
    for g in sorted(groups, key=lambda g: (_setting(g.first), _steps(g.first), strategy_label(g.first))):
        run = g.first
        lama = _layerwise(run)
        scale = least[_setting(run)] / _steps(run)
        rows.append(
            [run.config.get("model"), run.config.get("clients"), run.config.get("fraction"), run.world_size]
            + [strategy_label(run), _steps(run), run.config.get("fedlama_phi") if lama else None, g.n]
            + [run.data["timing/step"].shape[1], g.pooled(lambda r: averaged_share(r.data))]
            + [g.pooled(lambda r, s=scale: averaged_share(r.data) * s), g.pooled(final_accuracy)]
            + tta_cells(g, target)
        )
    notes = [
        POOL_NOTE,
        "averaged per round = sum over rounds and layers of (layer averaged x its parameters) / (rounds x model "
        "parameters): 100 % for FedAvg; communication vs FedAvg(T min) = that share x T min / T, the bytes per "
        "local step against FedAvg with the setting's smallest T (uploads; downloads follow the same pattern)",
    ]
    return Table(
        "fedlama",
        "Layer-wise aggregation (FedLAMA) against FedAvg",
        cols,
        rows,
        notes + ([TTA_NOTE] if target is not None else []),
    )

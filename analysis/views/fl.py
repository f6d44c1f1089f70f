"""The FedAvg table: one row per repeat group, with the options that tell FedAvg runs apart (C, E, B, partition,
alpha, mu, server optimizer), where a round's time goes, and accuracy and time-to-accuracy in rounds."""

from __future__ import annotations

import math

import numpy as np

from analysis.stats.accuracy import final_accuracy
from analysis.stats.groups import repeat_groups
from analysis.stats.metrics import bytes_per_row, row_times, schedule, step_stats, strategy_label
from analysis.views.core import POOL_NOTE, TTA_NOTE, WARMUP_NOTE, tta_cells, tta_columns
from analysis.views.tables import EST, INT, NUM, TEXT, Column, Table

OPTIONS = (
    ("clients", "K", INT),
    ("fraction", "C", NUM),
    ("local_epochs", "E", INT),
    ("local_steps", "T", INT),
    ("batch_size", "B", INT),
    ("partition", "partition", TEXT),
    ("alpha", "Dirichlet alpha", NUM),
    ("fedprox_mu", "mu", NUM),
    ("server_opt", "server opt", TEXT),
)


def aggregator_share(run, name: str, warmup: int) -> float:
    """Share of the aggregator's round time spent in ``fedavg/aggregator_<name>``."""
    lo = warmup if run.data["timing/step"].shape[1] > warmup else 0
    part = float(run.data[f"fedavg/aggregator_{name}"][0, lo:].sum())
    total = float(row_times(run, warmup).sum())
    return part / total if total else math.nan


def fedavg_table(runs, warmup: int, target: float | None = None) -> Table:
    groups = [g for g in repeat_groups(runs) if schedule(g.first) == "rounds"]
    cols = [Column("ranks", INT), Column("algorithm")] + [Column(label, kind) for _, label, kind in OPTIONS]
    cols += [Column("n", INT)]
    cols += [Column("rounds", INT), Column("MiB per round", EST, 2, 2**-20), Column("round median (ms)", EST, 1, 1e3)]
    cols += [Column("samples/s", EST, 0), Column("aggregator receiving (%)", EST, 1, 100)]
    cols += [Column("test accuracy (%)", EST, 1, 100), Column("dropped", EST, 1), Column("late", EST, 1)]
    cols += tta_columns(target, "round") + [Column("runs")]
    rows = [_row(g, warmup, target) for g in groups]
    notes = [
        WARMUP_NOTE.format(warmup),
        POOL_NOTE,
        "round = the aggregator's time from sampling to the last update folded; samples/s = samples the sampled "
        "clients trained (E epochs or T steps of their batches) / round time; MiB per round = model downloads + "
        "uploads, all ranks",
        "dropped, late: clients per run, summed over rounds",
    ]
    notes += [byzantine_note(g) for g in groups if byzantine_note(g)]
    return Table("fedavg", "FedAvg runs", cols, rows, notes + ([TTA_NOTE] if target is not None else []))


def byzantine_note(g) -> str:
    """A warning for runs whose attackers outnumbered what their aggregation rule tolerates (the file's
    ``byzantine_check``): their robust rule's guarantee does not hold, whatever the accuracy shows."""
    checks = [r.attrs.get("byzantine_check") for r in g.runs]
    worst = max((c for c in checks if c and c.get("rounds_exceeded")), key=lambda c: c["rounds_exceeded"], default=None)
    if worst is None:
        return ""
    return (
        f"warning: {g.label}: up to {worst['attackers_max']} attackers per round against {worst['rule']}, which "
        f"tolerates {worst['tolerated_min']}, in {worst['rounds_exceeded']} of {worst['rounds']} rounds"
    )


def _option(run, key: str):
    """An option's value for the table; T (``local_steps``) only where the run counted steps, not epochs, and the
    Dirichlet alpha only where the partition was Dirichlet (an iid run's default alpha means nothing)."""
    value = run.config.get(key)
    if key == "local_steps" and not value:
        return None
    return None if key == "alpha" and run.config.get("partition") != "dirichlet" else value


def _mean_bytes(run, warmup: int) -> float:
    per_round = bytes_per_row(run)
    return float(np.mean(per_round[warmup:] if per_round.size > warmup else per_round))


def _row(g, warmup: int, target: float | None) -> list:
    run = g.first
    return (
        [run.world_size, strategy_label(run)]
        + [_option(run, key) for key, _, _ in OPTIONS]
        + [g.n, run.data["timing/step"].shape[1], g.pooled(lambda r: _mean_bytes(r, warmup))]
        + [g.pooled(lambda r: step_stats(r, warmup).median_s)]
        + [g.pooled(lambda r: step_stats(r, warmup).samples_per_s)]
        + [g.pooled(lambda r: aggregator_share(r, "receive", warmup)), g.pooled(final_accuracy)]
        + [g.pooled(lambda r: float(r.data["fedavg/dropped"][0].sum()))]
        + [g.pooled(lambda r: float(r.data["fedavg/late"][0].sum()))]
        + tta_cells(g, target)
        + [g.label]
    )

"""Heterogeneous clients (``--client-tiers``): accuracy against the number of weak clients for layer-wise partial
training and width reduction, in the shape of InclusiveFL's table (Liu et al., KDD 2022: 16 strong clients plus
16 / 32 / 64 / 112 weak ones), and what each tier computed and uploaded per client and round."""

from __future__ import annotations

import math

import numpy as np

from analysis.stats.accuracy import final_accuracy
from analysis.stats.groups import repeat_groups
from analysis.views.core import POOL_NOTE
from analysis.views.tables import EST, INT, NUM, Column, Table

TIER_NAMES = ("strong", "moderate", "weak")  # tier indices 0, 1, 2 as the file's tier columns hold them
METHODS = {"partial": "partial training", "width": "width reduction"}


def tiered(run) -> bool:
    return "client_tiers" in run.attrs and "fedavg/clients/tier" in run.data


def method(run) -> str:
    """The tiers' training method with what it gives each weaker tier that has clients (partial: its frozen
    layers; width: its ratio r), so that runs differing by them are told apart; or the algorithm that trained the
    full model at every tier."""
    name = str(run.config.get("fl_algorithm"))
    if name not in METHODS:
        return f"{name} (full model)"
    facts = run.attrs["client_tiers"]
    weaker = [t for t, n in zip(TIER_NAMES[1:], tier_counts(run)[1:]) if n]
    if name == "width":
        parts = [f"{t} r = {facts[t].get('width', 1.0):.2f}" for t in weaker]
    else:
        parts = [f"{t} {facts[t]['frozen_layers']} frozen" for t in weaker]
    return f"{METHODS[name]} ({', '.join(parts)})" if parts else METHODS[name]


def tier_counts(run) -> list[int]:
    """Clients per tier (strong, moderate, weak), from the recorded assignment."""
    of_client = np.asarray(run.attrs["client_tiers"]["tier_of_client"], dtype=np.int64)
    return np.bincount(of_client, minlength=len(TIER_NAMES)).tolist()


def per_client_round(run, tier: int, name: str) -> float:
    """Mean of ``fedavg/clients/<name>`` over the trained (ok or late) rows of a tier's clients; NaN if none."""
    d = run.data
    rows = (np.asarray(d["fedavg/clients/tier"]) == tier) & np.isin(np.asarray(d["fedavg/clients/status"]), (0, 2))
    if f"fedavg/clients/{name}" not in d:  # upload_bytes: only where each client's model went to rank 0 as it is
        return math.nan
    values = np.asarray(d[f"fedavg/clients/{name}"], dtype=np.float64)[rows]
    return float(values.mean()) if values.size else math.nan


def backward_vs_strong(run, tier: int) -> float:
    strong = per_client_round(run, 0, "backward_s")
    return per_client_round(run, tier, "backward_s") / strong if strong > 0 else math.nan


SETTING = ("model", "dataset", "partition", "alpha", "partition_over", "fraction", "rounds", "local_epochs",
           "local_steps", "tier_speed", "deadline", "dropout", "client_speed")  # fmt: skip


def setting(run) -> tuple:
    """What must match for runs to be compared along the number of weak clients."""
    return tuple(str(run.config.get(k)) for k in SETTING)


def order(g) -> tuple:
    counts = tier_counts(g.first)
    return setting(g.first), method(g.first), counts[2], counts[1], counts[0]


def tiers_table(runs) -> Table:
    groups = [g for g in repeat_groups(runs) if tiered(g.first)]
    cols = [Column("model"), Column("method"), Column("strong", INT), Column("moderate", INT), Column("weak", INT)]
    cols += [Column("rounds", INT), Column("n", INT), Column("test accuracy (%)", EST, 2, 100)]
    cols += [Column("weak backward vs strong (%)", EST, 1, 100), Column("weak upload vs strong (%)", EST, 1, 100)]
    cols += [Column("runs")]
    rows = []
    for g in sorted(groups, key=order):
        run, counts = g.first, tier_counts(g.first)
        rows.append(
            [run.config.get("model"), method(run), *counts, run.config.get("rounds"), g.n, g.pooled(final_accuracy)]
            + [g.pooled(lambda r: backward_vs_strong(r, 2))]
            + [g.pooled(lambda r: per_client_round(r, 2, "upload_bytes") / per_client_round(r, 0, "upload_bytes"))]
            + [g.label]
        )
    notes = [
        POOL_NOTE,
        "partial training: a weaker tier trains only the layers after its --tier-frozen ones and uploads those "
        "(InclusiveFL); width reduction: it trains the first ceil(r C) units of every hidden layer (static "
        "HeteroFL); strong clients train the full model in both",
        "weak backward vs strong = a weak client's backward seconds per round / a strong client's (the layer hooks' "
        "time, measured on this machine; --tier-speed slowdowns are not in it); upload likewise in bytes (only "
        "where each client's model went to rank 0 as it is: --aggregation client, no --compress)",
    ]
    return Table("tiers", "Heterogeneous clients: accuracy against the number of weak clients", cols, rows, notes)


def tier_costs_table(runs) -> Table:
    """Per tiered run group and tier: clients, forward and backward time and bytes uploaded per client and round."""
    groups = [g for g in repeat_groups(runs) if tiered(g.first)]
    cols = [Column("model"), Column("method"), Column("weak", INT), Column("tier"), Column("clients", INT)]
    cols += [Column("frozen layers", INT), Column("width", NUM), Column("forward (ms)", EST, 2, 1e3)]
    cols += [Column("backward (ms)", EST, 2, 1e3), Column("uploaded (KiB)", EST, 1, 2**-10)]
    rows = []
    for g in sorted(groups, key=order):
        run, counts = g.first, tier_counts(g.first)
        facts, narrowed = run.attrs["client_tiers"], str(run.config.get("fl_algorithm")) == "width"
        for t, name in enumerate(TIER_NAMES):
            if not counts[t]:
                continue
            rows.append(
                [run.config.get("model"), method(run), counts[2], name, counts[t], facts[name]["frozen_layers"]]
                + [facts[name].get("width", 1.0) if narrowed else None]
                + [g.pooled(lambda r, t=t, n=n: per_client_round(r, t, n)) for n in ("forward_s", "backward_s")]
                + [g.pooled(lambda r, t=t: per_client_round(r, t, "upload_bytes"))]
            )
    notes = [
        POOL_NOTE,
        "per client and round, over the clients that trained (ok or late); frozen layers: partial training's "
        "--tier-frozen (width reduction reads it only to derive the width ratio when --tier-width is not given)",
    ]
    return Table("tier_costs", "Heterogeneous clients: compute and upload per tier", cols, rows, notes)

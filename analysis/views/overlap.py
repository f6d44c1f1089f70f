"""The overlap table: where a step's time goes when communication may run beside the backward pass, in the form
cluster profilers print (computing | communication not overlapped | overlapped | free) with Holistic Trace
Analysis's overlap percentage (definitions: :func:`analysis.stats.metrics.overlap_split`)."""

from __future__ import annotations

import math

from analysis.data.facts import overlapped
from analysis.stats.groups import repeat_groups
from analysis.stats.metrics import overlap_split, schedule, step_stats, strategy_label
from analysis.views.core import OVER_NOTE, _notes
from analysis.views.tables import EST, FLAG, INT, Column, Table

SHARES = ("computing_s", "exposed_s", "overlapped_s", "free_s")


def _share(key: str, warmup: int):
    def metric(run) -> float:
        split = overlap_split(run, warmup)
        return getattr(split, key) / split.step_s if split.step_s > 0 else math.nan

    return metric


def overlap_table(runs, warmup: int) -> Table:
    """One row per repeat group of lock-step runs, only when some run overlapped (else the communication table
    says it all)."""
    groups = [g for g in repeat_groups(runs) if schedule(g.first) == "lockstep"]
    if not any(overlapped(r) for g in groups for r in g.runs):
        groups = []
    cols = [Column("model"), Column("ranks", INT), Column("strategy"), Column("overlap"), Column("n", INT)]
    cols += [Column("step median (ms)", EST, 2, 1e3)]
    names = ("computing", "communication not overlapped", "overlapped", "free")
    cols += [Column(f"{name} (% of step)", EST, 1, 100) for name in names]
    cols += [Column("overlap (%)", EST, 1), Column("oversubscribed", FLAG), Column("runs")]
    rows = []
    for g in sorted(groups, key=lambda g: (str(g.first.config.get("model")), g.first.world_size, g.first.strategy)):
        run = g.first
        rows.append(
            [run.config.get("model"), run.world_size, strategy_label(run), "yes" if overlapped(run) else "no", g.n]
            + [g.pooled(lambda r: step_stats(r, warmup).median_s)]
            + [g.pooled(_share(key, warmup)) for key in SHARES]
            + [g.pooled(lambda r: overlap_split(r, warmup).overlap_percent), g.oversubscribed, g.label]
        )
    return Table(
        "overlap",
        "Communication overlapped with computation (cluster-profiler step breakdown)",
        cols,
        rows,
        _notes(
            warmup,
            "per computing rank, sums over measured steps as a share of the step time: computing = forward + "
            "backward + optimizer; communication not overlapped = the part the training thread waited for; "
            "overlapped = communication that ran during the backward pass (not part of the step sum); free = step "
            "- computing - not overlapped (data, packing, waiting on peers, Python)",
            "overlap = overlapped / all communication (Holistic Trace Analysis, get_comm_comp_overlap); a run "
            "without --overlap has none",
            "an overlapped run has one more busy thread per rank (ring --overlap: our communication thread; ddp: "
            "gloo's) that needs a core of its own to hide anything",
            OVER_NOTE,
        ),
    )

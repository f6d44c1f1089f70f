"""The report's tables over repeat groups (:mod:`analysis.stats.groups`): speedup, communication vs computation, the top
layers by communication, and the strategy comparison with time-to-accuracy. Each cell pooled over repeats is
mean +- 95 % CI with n shown."""

from __future__ import annotations

import math

import numpy as np

from analysis.stats.accuracy import final_accuracy, time_to_accuracy
from analysis.stats.groups import EFFICIENCY_LIMIT, Group, implausible, kept_apart, repeat_groups, speedups
from analysis.stats.intervals import estimate
from analysis.stats.metrics import comm_split, compute_ranks, layer_split, schedule, step_stats, strategy_label
from analysis.views.tables import EST, FLAG, INT, NUM, Column, Table

WARMUP_NOTE = "statistics leave out the first {} step(s) (round(s)) of each run as warm-up"
POOL_NOTE = (
    "n = repeats pooled (runs differing only by seed or by options that change nothing measured, analysis/README.md); "
    "a ± b = mean ± half-width of the 95 % t interval"
)
OVER_NOTE = "oversubscribed: more busy threads than cores on a host; times include waiting for a core"


def _notes(warmup: int, *more: str) -> list[str]:
    return [WARMUP_NOTE.format(warmup), POOL_NOTE, *more]


def speedup_table(runs, warmup: int) -> Table:
    cols = [
        Column("strategy"),
        Column("model"),
        Column("dataset"),
        Column("scaling"),
        Column("ranks", INT),
        Column("computing ranks", INT),
        Column("n", INT),
        Column("step or round median (ms)", EST, 2, 1e3),
        Column("samples/s", EST, 0),
        Column("speedup", EST),
        Column("efficiency (%)", EST, 1, 100),
        Column("oversubscribed", FLAG),
        Column("runs"),
    ]
    found = speedups(runs, warmup)
    rows = [
        [r["strategy"], r["model"], r["dataset"], r["scaling"], r["ranks"], r["compute_ranks"], r["n"]]
        + [r["step_median_s"], r["samples_per_s"], r["speedup"], r["efficiency"], r["oversubscribed"]]
        + [r["file"] + (" †" if implausible(r["efficiency"]) else "")]
        for r in found
    ]
    flagged = [
        f"† efficiency above {100 * EFFICIENCY_LIMIT:.0f} % ({r['file']}): superlinear, or a baseline measured under "
        "other conditions; check both runs before using the number"
        for r in found
        if implausible(r["efficiency"])
    ]
    return Table(
        "speedup",
        "Throughput, speedup and efficiency (against the fewest computing ranks of the same workload)",
        cols,
        rows,
        _notes(
            warmup,
            "samples/s = samples actually trained per second (lock-step: global batch x measured steps / their "
            "summed time; ps async and ssp: samples / training wall time; fedavg: the sampled clients' samples / "
            "round time)",
            "speedup = samples/s ratio; ideal speedup = ratio of computing ranks (servers and the aggregator "
            "train nothing); efficiency = speedup / ideal; – where a workload ran at one rank count only; runs are "
            "compared only at the same threads per rank and oversubscription",
            OVER_NOTE,
            *flagged,
            *kept_apart(runs),
        ),
    )


def communication_table(runs, warmup: int) -> Table:
    cols = [Column("strategy"), Column("model"), Column("ranks", INT), Column("n", INT)]
    cols += [Column(f"{name} (s)", EST, 3) for name in ("overall", "communication", "packing", "computation", "wait")]
    cols += [Column("communication share (%)", EST, 1, 100), Column("runs")]
    rows = []
    for g in repeat_groups(runs):
        run, keys = g.first, ("overall_s", "comm_s", "pack_s", "compute_s", "wait_s", "share")
        cells = [g.pooled(lambda r, key=key: getattr(comm_split(r, warmup), key)) for key in keys]
        rows.append([strategy_label(run), run.config.get("model"), run.world_size, g.n, *cells, g.label])
    return Table(
        "communication",
        "Communication vs computation (PipeTransformer Table 2 form)",
        cols,
        rows,
        _notes(
            warmup,
            "costs: mean over computing ranks of the sum over measured steps; computation = forward + backward + "
            "optimizer; packing = copies between the model and host buffers (not communication); communication "
            "share = communication / overall",
        ),
    )


def layers_table(runs, warmup: int, top: int = 5) -> Table:
    cols = [Column("run"), Column("strategy"), Column("layer"), Column("communication (ms/step)", NUM, 3, 1e3)]
    cols += [
        Column("bytes/step", INT),
        Column("bandwidth (MB/s)", NUM, 1, 1e-6),
        Column("compute (ms/step)", NUM, 3, 1e3),
    ]
    rows = []
    for g in repeat_groups(runs):
        if schedule(g.first) == "rounds":
            continue
        per_run = [layer_split(r, warmup) for r in g.runs]
        mean = {k: np.mean([[row[k] for row in rs] for rs in per_run], axis=0) for k in per_run[0][0] if k != "layer"}
        for i in np.argsort(-mean["comm_s"], kind="stable")[:top]:  # pragma: no mutate (ties: any order is right)
            rows.append(
                [g.label, strategy_label(g.first), per_run[0][i]["layer"], mean["comm_s"][i], mean["bytes"][i]]
                + [mean["bandwidth_Bps"][i], mean["forward_s"][i] + mean["backward_s"][i]]
            )
    return Table(
        "layers",
        f"Top {top} layers by communication time, per run",
        cols,
        rows,
        [f"mean over computing ranks, measured steps (after {warmup}) and repeats; bandwidth = bytes / comm time"],
    )


def tta_columns(target: float | None, unit: str) -> list[Column]:
    if target is None:
        return []
    reached = "not reached"
    return [
        Column(f"{unit}s to {100 * target:g} %", EST, 1, missing=reached),
        Column(f"train s to {100 * target:g} %", EST, missing=reached),
        Column(f"MiB to {100 * target:g} %", EST, 2, 2**-20, missing=reached),
    ]


def tta_cells(g: Group, target: float | None) -> list:
    if target is None:
        return []
    out = [time_to_accuracy(r, target) for r in g.runs]
    return [estimate(getattr(o, k) for o in out) for k in ("rows", "seconds", "bytes")]


def blocked_s(run, warmup: int) -> float:
    """Barrier wait + (ps async/ssp) reply held back by the staleness bound, mean over computing ranks."""
    ranks = compute_ranks(run)
    blocked = run.data.get("ps/blocked")
    extra = float(blocked[ranks].sum(axis=1).mean()) if blocked is not None else 0.0
    return comm_split(run, warmup).wait_s + extra


def final_loss(run) -> float:
    """Mean training loss over the last 10 % of steps on computing ranks (rows a rank never reached, zero, left
    out)."""
    loss = run.data["metrics/loss"][compute_ranks(run)]
    if not loss.size:
        return math.nan
    tail = loss[:, -max(1, loss.shape[1] // 10) :]
    tail = tail[(tail != 0) & np.isfinite(tail)]
    return float(tail.mean()) if tail.size else math.nan  # pragma: no mutate (the mean of nothing is NaN too)


def staleness(run, stat) -> float:
    s = run.data.get("ps/updates/staleness")
    return float(stat(s)) if s is not None and s.size else math.nan


def strategy_table(runs, warmup: int, target: float | None = None) -> Table:
    cols = [Column("model"), Column("ranks", INT), Column("strategy"), Column("n", INT)]
    cols += [Column("samples/s", EST, 0), Column("communication share (%)", EST, 1, 100)]
    cols += [Column("time blocked (s)", EST, 3), Column("staleness mean", EST), Column("staleness max", EST, 0)]
    cols += [Column("final loss", EST, 3), Column("test accuracy (%)", EST, 1, 100)]
    cols += tta_columns(target, "step") + [Column("runs")]
    rows = []
    groups = [g for g in repeat_groups(runs) if schedule(g.first) != "rounds"]
    for g in sorted(groups, key=lambda g: (str(g.first.config.get("model")), g.first.world_size, g.first.strategy)):
        run = g.first
        rows.append(
            [run.config.get("model"), run.world_size, strategy_label(run), g.n]
            + [g.pooled(lambda r: step_stats(r, warmup).samples_per_s), g.pooled(lambda r: comm_split(r, warmup).share)]
            + [g.pooled(lambda r: blocked_s(r, warmup)), g.pooled(lambda r: staleness(r, np.mean))]
            + [g.pooled(lambda r: staleness(r, np.max)), g.pooled(final_loss), g.pooled(final_accuracy)]
            + tta_cells(g, target)
            + [g.label]
        )
    return Table(
        "strategies",
        "Strategy comparison (same model and ranks side by side)",
        cols,
        rows,
        _notes(
            warmup,
            "time blocked = barrier wait + (ps async/ssp) reply held back, mean over computing ranks; final loss = "
            "mean training loss over the last 10 % of steps; test accuracy at the last evaluation",
        )
        + ([TTA_NOTE] if target is not None else []),
    )


TTA_NOTE = (
    "to target: steps (rounds) trained, training seconds (sum of step times; evaluation left out) and bytes moved "
    "by all ranks until the first evaluation at or above the target; n counts the runs that reached it"
)

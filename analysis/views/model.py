"""The cost model's table (measured vs predicted at the run's own size, and predictions at scale), the fit behind
it, and the provenance of every run in a report."""

from __future__ import annotations

import numpy as np

from analysis.models import costmodel
from analysis.models.prediction import error_at_own_size, predict
from analysis.stats.metrics import oversubscribed, schedule, strategy_label
from analysis.views.tables import FLAG, INT, NUM, Column, Table

SCALE = [16, 64, 256, 1024, 4096]


def short_commit(commit: str) -> str:
    """The commit's first 10 characters, keeping ``-dirty`` (a run from uncommitted code must say so)."""
    return commit[:10] + ("-dirty" if commit.endswith("-dirty") else "")


def fit_from_micro(micro_runs) -> costmodel.Fit | None:
    """alpha-beta per algorithm from the first micro file with our all-reduce over several sizes (else MPI's,
    fitted as if it switched where ours does, else a ping-pong); an implementation with wrong results
    (``micro/<op>/<impl>/wrong`` above zero) is passed over."""
    for run in micro_runs:
        p = int(run.attrs.get("world_size", 0))  # pragma: no mutate (0 or 1: either is no all-reduce fit)
        for op, impl in (("allreduce", "ours"), ("allreduce", "mpi"), ("latency", "ours")):
            key = f"micro/{op}/{impl}/time_s"
            if key not in run.data or run.data[key].shape[0] < 2 or _wrong(run, op, impl):
                continue
            sizes = run.data[f"micro/{op}/{impl}/size_bytes"]
            times = np.nanmedian(run.data[key], axis=1)
            if op == "allreduce" and p >= 2:
                fit = costmodel.fit_allreduce(sizes, times, p)
                fit.source = f"{run.name}: {impl} all-reduce on {p} ranks"
            elif op == "latency":
                fit = costmodel.fit_p2p(sizes, times)
                fit.source = f"{run.name}: ping-pong"
            else:
                continue
            fit.oversubscribed = oversubscribed(run)
            return fit
    return None


def _wrong(run, op: str, impl: str) -> bool:
    """Whether the file says this implementation returned wrong results (``#wrong``): its times are no fit."""
    wrong = run.data.get(f"micro/{op}/{impl}/wrong")
    return wrong is not None and bool(np.any(np.asarray(wrong) > 0))


def model_table(runs, fit: costmodel.Fit, scale: list[int], warmup: int) -> Table:
    cols = [Column("run"), Column("strategy"), Column("ranks", INT), Column("measured (ms)", NUM, 2, 1e3)]
    cols += [Column("predicted (ms)", NUM, 2, 1e3), Column("error (%)", NUM, 1, 100), Column("oversubscribed", FLAG)]
    for p in scale:
        cols += [Column(f"p={p} step (ms)", NUM, 2, 1e3), Column(f"p={p} speedup", NUM, 1)]
    rows = []
    for run in runs:
        if schedule(run) == "rounds":
            continue
        measured, predicted, err = error_at_own_size(run, fit, warmup)
        preds = predict(run, fit, [run.world_size, *scale], warmup)[1:]
        row = [run.name, strategy_label(run), run.world_size, measured, predicted, err, oversubscribed(run)]
        rows.append(row + [x for pr in preds for x in (pr.step_s, pr.speedup)])
    return Table(
        "model",
        "Cost model: measured vs predicted step, and predictions at scale",
        cols,
        rows,
        costmodel_notes(fit),
    )


def costmodel_notes(fit: costmodel.Fit) -> list[str]:
    return fit.describe() + [
        "predicted = measured time outside communication and waiting + modelled communication, each buffer with "
        "the algorithm our kernel runs at that p and size (analysis/models/costmodel.py); speedup: weak scaling "
        "against the run's own size, in computing ranks",
        "overlapped runs (ring --overlap, ddp): + only the communication the replayed bucket schedule leaves after "
        "the measured backward pass (analysis/models/overlap.py; assumes the communication has a core of its own)",
        "compressed runs (ring --compress): the wire sizes the run recorded (analysis/models/compress.py); "
        "compression time stays in the measured part and is not scaled with p",
        "oversubscribed runs: the model has no term for waiting for a core; their error is not the model's",
        "FedAvg rounds are not predicted at scale: a host's share of the clients changes with the rank count",
    ]


def provenance_table(runs) -> Table:
    cols = [Column("file"), Column("strategy"), Column("ranks", INT), Column("status"), Column("steps", INT)]
    cols += [Column("seed", INT), Column("created (UTC)"), Column("commit"), Column("MPI"), Column("Slurm job")]
    rows = [
        [r.name, strategy_label(r), r.world_size, r.attrs.get("status"), r.attrs.get("completed_steps")]
        + [r.config.get("seed"), r.attrs.get("created_utc", ""), short_commit(str(r.attrs.get("git_commit", "")))]
        + [str(r.attrs.get("mpi_library", ""))[:30], r.attrs.get("slurm_job_id", "")]
        for r in runs
    ]
    return Table("provenance", "Runs behind this report", cols, rows)

"""Predicted step time of a measured run at other rank counts, from its own non-communication time and the
alpha-beta model of :mod:`analysis.models.costmodel` (formulas and sources there)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analysis.data.facts import computing, exchange, overlapped
from analysis.data.load import RunResults
from analysis.models.compress import compress_wire, compressed_ring_time
from analysis.models.costmodel import Fit, allreduce_time, p2p_time
from analysis.models.overlap import buckets_of, predicted_exposed
from analysis.stats.metrics import compute_ranks, per_row, row_times


def exchanged_buffers(run: RunResults) -> np.ndarray:
    """Bytes of each buffer one all-reduce step moves: the run's buckets (:func:`analysis.models.overlap.buckets_of`:
    recorded in ``strategy_info.buckets``, else the bucketing rule on ``--bucket-mb``; one per layer at 0)."""
    layer_bytes = run.data["layers/bytes"].astype(np.float64)  # pragma: no mutate (sums of ints are exact too)
    return np.array([layer_bytes[list(g)].sum() for g in buckets_of(run)])


def _ring(run, p, fit):
    if compress_wire(run):
        return compressed_ring_time(run, p, fit)
    return sum(allreduce_time(n, p, fit) for n in exchanged_buffers(run))


def _localsgd(run, p, fit):
    return _ring(run, p, fit) / max(1, int(run.config.get("local_steps", 1)))


def _servers(run) -> int:
    return max(1, int(run.config.get("servers", 1)))


def _ps(run, p, fit):
    servers = _servers(run)
    workers = max(1, p - servers)
    layer_bytes = run.data["layers/bytes"].astype(np.float64)  # pragma: no mutate (n / servers is float anyway)
    return 2 * workers * sum(p2p_time(n / servers, fit) for n in layer_bytes)


def _fedavg(run, p, fit):
    sampled = run.data.get("fedavg/sampled")
    m = float(np.median(sampled[0])) if sampled is not None and sampled.size else 1.0
    layer_bytes = run.data["layers/bytes"].astype(np.float64)  # pragma: no mutate (p2p_time is float anyway)
    return 2 * m * sum(p2p_time(n, fit) for n in layer_bytes)


COMMUNICATION = {"allreduce": _ring, "periodic": _localsgd, "parameter_server": _ps, "federated": _fedavg}
"""Modelled communication seconds per step (per round for fedavg) on p ranks, by how the strategy exchanges
(:func:`analysis.data.facts.exchange`)."""

COMPUTING = {
    "all": lambda run, p: p,
    "workers": lambda run, p: max(1, p - _servers(run)),
    "clients": lambda run, p: max(1, p - 1),
}
"""Computing ranks out of p, by which ranks train (:func:`analysis.data.facts.computing`)."""


def computing_of(run: RunResults, p: int) -> int:
    return COMPUTING[computing(run)](run, p)


def comm_per_step(run: RunResults, p: int, fit: Fit) -> float:
    return COMMUNICATION[exchange(run)](run, p, fit)


def compute_per_step(run: RunResults, warmup: int = 1) -> float:
    """Median over measured steps of the slowest computing rank's time outside communication and waiting:
    forward, backward, optimizer, data, packing and everything else a step does locally. This part does
    not change with the rank count under weak scaling; the model adds communication to it. An overlapped run's
    step holds only its exposed communication (``timing/exposed``), so that is what is taken out."""
    ranks = compute_ranks(run)
    lo = warmup if run.data["timing/step"].shape[1] > warmup else 0
    step = run.data["timing/step"][ranks, lo:]
    comm = per_row(run.data, "timing/exposed" if "timing/exposed" in run.data else "timing/comm")[ranks, lo:]
    local = step - comm - run.data["timing/wait"][ranks, lo:]
    if not local.size:  # pragma: no mutate (no rows: refused earlier)
        return 0.0
    return float(np.median(local.max(axis=0)))


@dataclass
class Prediction:
    ranks: int
    step_s: float
    comm_s: float
    share: float  # communication share of the step
    speedup: float  # weak scaling, against the first rank count predicted


def predict(run: RunResults, fit: Fit, ranks: list[int], warmup: int = 1) -> list[Prediction]:
    """Step time, communication share and weak-scaling speedup (samples/s ratio, computing ranks) of ``run``'s
    strategy at each rank count; speedup is against the first rank count given. An overlapped run's step adds
    only the communication its replayed bucket schedule leaves exposed (:mod:`analysis.models.overlap`)."""
    compute = compute_per_step(run, warmup)
    out = []
    for p in ranks:
        comm = comm_per_step(run, p, fit)
        step = compute + (predicted_exposed(run, p, fit, warmup) if overlapped(run) else comm)
        out.append(Prediction(p, step, comm, comm / step if step else 0.0, 0.0))
    base = computing_of(run, ranks[0]) / out[0].step_s if out[0].step_s else 0.0
    for pr in out:
        pr.speedup = (computing_of(run, pr.ranks) / pr.step_s) / base if base and pr.step_s else 0.0
    return out


def error_at_own_size(run: RunResults, fit: Fit, warmup: int = 1) -> tuple[float, float, float]:
    """(measured median step, predicted step, relative error (predicted - measured) / measured)."""
    measured = float(np.median(row_times(run, warmup)))
    predicted = predict(run, fit, [run.world_size], warmup)[0].step_s
    return measured, predicted, (predicted - measured) / measured if measured else math.nan

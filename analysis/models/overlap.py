"""The cost model for an overlapped step: replay the bucket schedule instead of adding communication to compute.

A bucket is ready when the backward pass has finished its last layer (measured per-layer backward times, in
backward order: last layer first); one communication stream takes the buckets in order, each starting when it is
ready and the previous bucket is done, and lasting the modelled all-reduce time of its bytes
(:func:`analysis.models.costmodel.allreduce_time`, the algorithm our kernel picks). What the stream still has to
do when the backward pass ends is exposed:

    ready_g = sum of backward times of the layers up to g's last one;  start_g = max(ready_g, end_{g-1})
    end_g = start_g + T_allreduce(bytes_g, p);   exposed = max(0, end_last - backward total)

This is the schedule PyTorch DDP's reducer runs (Li et al., VLDB 2020, section 3.2.3, buckets launched in order as
they become ready) with the assumption the replay makes explicit: the communication stream has a core of its own, so
computing does not slow down while it runs (on an oversubscribed host it does; such runs are flagged).
"""

from __future__ import annotations

import numpy as np

from analysis.data.load import RunResults
from analysis.models.costmodel import Fit, allreduce_time
from analysis.stats.metrics import compute_ranks, per_layer_mean
from kernels.reference import bucket_layers


def buckets_of(run: RunResults) -> list[list[int]]:
    """Layer indices of each bucket, in launch (backward) order: the buckets a ring run recorded; for ``ddp``,
    DDP's greedy rule on ``--bucket-mb`` over layers in backward order (its per-parameter split and 1 MiB first
    bucket are not modelled)."""
    info = run.attrs.get("strategy_info") or {}
    if info.get("buckets"):
        return [list(g) for g in info["buckets"]]
    bucket_mb = float(info.get("bucket_mb") or run.config.get("bucket_mb") or 0.0)  # ddp records what it used
    return [list(g) for g in bucket_layers(list(run.data["layers/bytes"]), bucket_mb)]


def replay_exposed(backward_s: np.ndarray, buckets: list[list[int]], comm_s: list[float]) -> float:
    """Seconds of communication left when the backward pass ends (module docstring)."""
    order = list(reversed(range(len(backward_s))))
    seconds = np.asarray(backward_s, dtype=np.float64)  # pragma: no mutate (backward times are float already)
    finished = dict(zip(order, np.cumsum(seconds[order])))
    total = float(np.sum(backward_s))
    end = 0.0
    for layers, seconds in zip(buckets, comm_s):
        ready = max(finished[i] for i in layers)
        end = max(ready, end) + seconds
    return max(0.0, end - total)


def predicted_exposed(run: RunResults, p: int, fit: Fit, warmup: int = 1) -> float:
    """Exposed communication per step of ``run``'s model on p ranks, replayed with its measured backward times."""
    backward = per_layer_mean(run.data, "timing/backward", compute_ranks(run), warmup)
    buckets = buckets_of(run)
    layer_bytes = run.data["layers/bytes"].astype(np.float64)  # pragma: no mutate (sums of ints alike)
    return replay_exposed(backward, buckets, [allreduce_time(layer_bytes[g].sum(), p, fit) for g in buckets])

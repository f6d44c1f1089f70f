"""Communication of a compressed ring step at p ranks, from the wire plan the run recorded
(``strategy_info.compress_wire``, written by :meth:`bench.compress.exchange.CompressedAveraging.wire_plan`): the
suite's own sizes, so the model needs no knowledge of the methods.

- a buffer all-reduced by the ring (fp16/bf16 in their type; PowerSGD's P and Q): :func:`analysis.models.costmodel.
  allreduce_time`, as for uncompressed buffers;
- a payload all-gathered by the point-to-point ring (top-k, random-k, QSGD, sign): p - 1 steps, each a length
  (8 bytes) and a payload message to the right neighbour: (p - 1) (2 alpha + beta (payload + 8)).

Compression and decompression time stays in the run's measured time outside communication: for the gathered
methods it grows with p (p payloads decompressed), which the model does not scale.
"""

from __future__ import annotations

from analysis.data.load import RunResults
from analysis.models.costmodel import Fit, allreduce_time, p2p_time


def compress_wire(run: RunResults) -> list[dict] | None:
    info = run.attrs.get("strategy_info") or {}
    return info.get("compress_wire")


def allgather_time(payload: float, p: int, fit: Fit) -> float:
    return (p - 1) * (p2p_time(8, fit) + p2p_time(payload, fit))


def compressed_ring_time(run: RunResults, p: int, fit: Fit) -> float:
    total = 0.0
    for bucket in compress_wire(run):
        total += sum(allreduce_time(n, p, fit) for n in bucket.get("allreduce_bytes", []))
        if "allgather_bytes" in bucket:
            total += allgather_time(bucket["allgather_bytes"], p, fit)
    return total

"""Pure numpy maths behind the kernels: no MPI here, so each function is tested on its own.

These are the oracles the MPI kernels are checked against, and the formulas the strategies share.
"""

from __future__ import annotations

import numpy as np

from kernels.topology import block_bounds

SMALL_BYTES = 128 * 1024
"""Below this many bytes the ring kernel hands over to recursive doubling (fewer, latency-bound steps). The
crossover falls as p grows (doubling moves log2(p) n bytes, the ring 2 (p - 1) n / p); measured here with
both interleaved on 2 cores (MPICH 5.0.2): doubling was faster up to 512 KiB at 4 ranks and up to 128 KiB
at 8 ranks, the ring from 1 MiB (4 ranks) and 256 KiB (8 ranks)."""


def allreduce_algorithm(nbytes: int, p: int, small_bytes: int = SMALL_BYTES) -> str:
    """The algorithm :class:`kernels.ring_allreduce.RingAllreduce` runs for a buffer of ``nbytes`` on ``p``
    ranks: ``"none"`` (one rank), ``"doubling"`` below ``small_bytes``, else ``"ring"``. The cost model
    (``analysis/models/costmodel.py``) predicts each layer with the algorithm chosen here."""
    if p < 2 or nbytes == 0:
        return "none"
    return "doubling" if nbytes < small_bytes else "ring"


def doubling_steps(p: int) -> int:
    """Exchanges on the critical path of recursive doubling on ``p`` ranks: log2 of the largest power of two
    p' <= p, plus two when p is not a power of two (the fold into p' ranks and the hand-back; Thakur,
    Rabenseifner & Gropp 2005, Sec. 4.4)."""
    if p < 2:
        return 0
    p2 = 1 << (p.bit_length() - 1)
    return (p2.bit_length() - 1) + (2 if p2 != p else 0)


def doubling_plan(index: int, p: int) -> tuple[int | None, list[int], str]:
    """For ring position ``index`` of ``p``: (virtual rank or None if it sits out, partner positions per round,
    role in the fold: ``"give"`` (hands its buffer over and waits), ``"take"`` (adds a neighbour's buffer
    first) or ``""``)."""
    p2 = 1 << (p.bit_length() - 1)
    r = p - p2
    if index < 2 * r:
        if index % 2 == 0:
            return None, [], "give"
        vrank, role = index // 2, "take"
    else:
        vrank, role = index - r, ""

    def real(v: int) -> int:
        return 2 * v + 1 if v < r else v + r

    partners = []
    mask = 1
    while mask < p2:
        partners.append(real(vrank ^ mask))
        mask <<= 1
    return vrank, partners, role


def ring_chunks(n: int, p: int) -> list[tuple[int, int]]:
    """Half-open bounds of the ``p`` chunks a length-``n`` buffer is cut into for a ring all-reduce.
    Chunks differ in size by at most one element; when ``n < p`` the last ``p - n`` chunks are empty."""
    return [block_bounds(n, p, i) for i in range(p)]


def reduce_scatter_schedule(index: int, p: int, step: int) -> tuple[int, int]:
    """(chunk sent, chunk received) by ring position ``index`` in reduce-scatter step ``step`` (0-based).

    After ``p - 1`` steps position ``i`` holds the full sum of chunk ``(i + 1) % p`` (Patarasuk & Yuan 2009,
    "Bandwidth optimal all-reduce algorithms for clusters of workstations", Sec. 3).
    """
    return (index - step) % p, (index - step - 1) % p


def all_gather_schedule(index: int, p: int, step: int) -> tuple[int, int]:
    """(chunk sent, chunk received) by ring position ``index`` in all-gather step ``step``: it forwards the
    fully reduced chunk it got last, starting with its own ``(index + 1) % p``."""
    return (index - step + 1) % p, (index - step) % p


def weighted_mean(arrays: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """``sum_k (w_k / sum w) a_k`` in float64: the FedAvg aggregate (McMahan et al. 2017, Algorithm 1)."""
    if len(arrays) != len(weights) or not arrays:
        raise ValueError("need one weight per array and at least one array")
    total = float(np.sum(weights))
    if total <= 0:
        raise ValueError("weights must sum to a positive number")
    out = np.zeros_like(arrays[0], dtype=np.float64)
    for a, w in zip(arrays, weights, strict=True):
        out += (w / total) * a.astype(np.float64)
    return out


def ring_bus_bandwidth(size_bytes: float, seconds: float, p: int) -> tuple[float, float]:
    """(algbw, busbw) in bytes/s with the nccl-tests definitions: algbw = S / t; all-reduce busbw =
    algbw * 2 (p - 1) / p (nccl-tests doc/PERFORMANCE.md)."""
    algbw = size_bytes / seconds
    return algbw, algbw * (2.0 * (p - 1) / p if p > 1 else 0.0)


def ring_elements_sent(n: int, p: int, index: int) -> int:
    """Elements ring position ``index`` sends in one ring all-reduce of ``n`` elements: the chunks it sends in
    the ``p - 1`` reduce-scatter and ``p - 1`` all-gather steps (about ``2 (p - 1) n / p``)."""
    if p == 1 or n == 0:
        return 0
    chunks = ring_chunks(n, p)
    total = 0
    for step in range(p - 1):
        lo, hi = chunks[reduce_scatter_schedule(index, p, step)[0]]
        total += hi - lo
        lo, hi = chunks[all_gather_schedule(index, p, step)[0]]
        total += hi - lo
    return total


def bucket_layers(layer_bytes: list[int], bucket_mb: float) -> list[tuple[int, ...]]:
    """Layer indices grouped, in backward order (last layer first), into buckets of at least ``bucket_mb`` MiB, like
    DDP's gradient buckets; ``bucket_mb <= 0`` gives one bucket per layer. The training side's buckets
    (``bench.comm.staging.bucket_groups``) and the cost model's (``analysis.models.overlap``) both come from
    here."""
    order = list(reversed(range(len(layer_bytes))))
    if bucket_mb <= 0:
        return [(i,) for i in order]
    limit = bucket_mb * 2**20
    groups, current, size = [], [], 0
    for i in order:
        current.append(i)
        size += int(layer_bytes[i])
        if size >= limit:
            groups.append(tuple(current))
            current, size = [], 0
    return groups + ([tuple(current)] if current else [])

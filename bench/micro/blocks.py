"""``micro --op allgather|reduce-scatter|broadcast``: our point-to-point collectives (:mod:`kernels.collectives`)
beside MPI's ``Allgather``, ``Reduce_scatter_block`` and ``Bcast``, for the ZeRO/FSDP-minded.

A size S is the whole buffer, as in nccl-tests: all-gather's output and reduce-scatter's input are S bytes of p
equal blocks (S is rounded down to a multiple of 4 p bytes, at least one float32 per block: :func:`block_sizes`);
broadcast sends S bytes from rank 0. Every size of every implementation is checked against MPI's result
(integer-valued float32: sums are exact).
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from bench.micro.checks import mismatches, strict_or
from kernels.collectives import BinomialBroadcast, RingAllgather, RingReduceScatter
from kernels.topology import Topology

BLOCK_OPS = ("allgather", "reduce-scatter", "broadcast")


def block_sizes(sizes, p: int) -> list[int]:
    """The sizes as whole buffers of ``p`` equal float32 blocks (duplicates dropped, order kept)."""
    out = []
    for size in sizes:
        whole = max(4 * p, size // (4 * p) * 4 * p)
        if whole not in out:
            out.append(whole)
    return out


def bus_factor(op: str, p: int) -> float:
    """busbw / algbw (nccl-tests doc/PERFORMANCE.md): all-reduce 2 (p - 1) / p, all-gather and reduce-scatter
    (p - 1) / p, broadcast 1."""
    if op == "broadcast":
        return 1.0
    share = (p - 1) / p if p > 1 else 0.0
    return 2 * share if op == "allreduce" else share


def _ops(comm, op: str, buf: np.ndarray, out: np.ndarray) -> dict:
    """Both implementations of ``op`` on ``buf`` in place (reduce-scatter: this rank's block into ``out``)."""
    topo = Topology.ring(comm.rank, comm.size)
    if op == "allgather":
        gather = RingAllgather(comm, topo)
        return {"ours": lambda: gather(buf), "mpi": lambda: comm.Allgather(MPI.IN_PLACE, buf)}
    if op == "reduce-scatter":
        scatter = RingReduceScatter(comm, topo)
        return {"ours": lambda: np.copyto(out, scatter(buf)), "mpi": lambda: comm.Reduce_scatter_block(buf, out)}
    bcast = BinomialBroadcast(comm, topo)
    return {"ours": lambda: bcast(buf), "mpi": lambda: comm.Bcast(buf, root=0)}


def bench_blocks(comm, op: str, sizes, impls, timer, checks=None) -> dict:
    out_samples, checks = {impl: [] for impl in impls}, strict_or(checks, comm)
    for size in sizes:
        n = size // 4
        base = ((np.arange(n) % 7) + comm.rank + 1).astype(np.float32)
        expect = _reference(comm, op, base)
        buf, out = base.copy(), np.empty(n // comm.size, dtype=np.float32)
        ops = {impl: fn for impl, fn in _ops(comm, op, buf, out).items() if impl in impls}

        def reset(_impl, buf=buf, base=base):
            buf[:] = base

        samples = timer(ops, size, reset)
        for impl in impls:
            reset(impl)
            ops[impl]()
            got = out if op == "reduce-scatter" else buf
            checks.record(impl, mismatches(got, expect), f"{impl} {op} of {size} bytes")
            out_samples[impl].append(samples[impl])
    return out_samples


def _reference(comm, op: str, base: np.ndarray) -> np.ndarray:
    """MPI's answer on a copy (out of place), for the checks."""
    block = base.size // comm.size
    if op == "allgather":
        mine = base[comm.rank * block : (comm.rank + 1) * block].copy()
        full = np.empty_like(base)
        comm.Allgather(mine, full)
        return full
    if op == "reduce-scatter":
        out = np.empty(block, dtype=base.dtype)
        comm.Reduce_scatter_block(base.copy(), out)
        return out
    return comm.bcast(base if comm.rank == 0 else None, root=0)

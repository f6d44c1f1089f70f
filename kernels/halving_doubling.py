"""Recursive halving/doubling all-reduce (Rabenseifner's algorithm) for power-of-two rank counts.

Reduce-scatter by recursive halving: in log2 p steps each rank exchanges half of its current segment with the
partner at distance p/2, p/4, ..., 1 and keeps (and sums) the other half; then an all-gather by recursive doubling
retraces the steps. Every rank sends 2 ((p - 1) / p) n elements, as in the ring, but in 2 log2 p steps instead of
2 (p - 1). Cost model: 2 log2(p) alpha + 2 ((p - 1) / p) n beta (Thakur, Rabenseifner & Gropp 2005, "Optimization
of collective communication operations in MPICH", Sec. 4.4; Rabenseifner 2004).

Not used by any strategy: ``micro --impl hd`` times it beside our ring and MPI's ``Allreduce``, to show where the
ring's time goes (its 2 (p - 1) synchronising steps) on a given machine.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from kernels.buffers import ScratchPool
from kernels.tags import Tag, tag_for, tag_upper_bound
from kernels.topology import Topology


def halving_plan(index: int, p: int, n: int) -> list[tuple[int, tuple[int, int], tuple[int, int]]]:
    """Per reduce-scatter step: (partner position, kept range, sent range); ranges are element bounds."""
    if p & (p - 1):
        raise ValueError(f"recursive halving needs a power-of-two rank count, got {p}")
    plan, lo, hi, d = [], 0, n, p // 2
    while d >= 1:
        mid = lo + (hi - lo) // 2
        keep, send = ((lo, mid), (mid, hi)) if index & d == 0 else ((mid, hi), (lo, mid))
        plan.append((index ^ d, keep, send))
        lo, hi = keep
        d //= 2
    return plan


class HalvingDoublingAllreduce:
    """Sum a buffer across ``topology.ring_ranks`` in place (p must be a power of two)."""

    def __init__(self, comm: MPI.Comm, topology: Topology):
        self.comm = comm
        self.topology = topology
        self._scratch = ScratchPool()
        self._tag_ub = tag_upper_bound(comm)

    def __call__(self, buf: np.ndarray, key: int = 0) -> np.ndarray:
        topo = self.topology
        p = topo.ring_size
        if p == 1 or buf.size == 0:
            return buf
        plan = halving_plan(topo.ring_index, p, buf.size)
        tag = tag_for(Tag.RING, key, self._tag_ub)
        scratch = self._scratch.get(buf.dtype, buf.size - buf.size // 2)
        ranks = topo.ring_ranks
        for partner, (klo, khi), (slo, shi) in plan:
            incoming = scratch[: khi - klo]
            self.comm.Sendrecv(buf[slo:shi], ranks[partner], tag, incoming, ranks[partner], tag)
            np.add(buf[klo:khi], incoming, out=buf[klo:khi])
        for partner, (klo, khi), (slo, shi) in reversed(plan):
            self.comm.Sendrecv(buf[klo:khi], ranks[partner], tag, buf[slo:shi], ranks[partner], tag)
        return buf

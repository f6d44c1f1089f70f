"""Recursive-doubling all-reduce for small messages, from explicit point-to-point messages.

Latency-optimal: ceil(log2 p) exchanges of the whole buffer instead of the ring's 2 (p - 1) chunk steps.
Cost model: log2(p) (alpha + n beta). For p not a power of two, the first 2r ranks (r = p - p', p' the
largest power of two <= p) pair up: each even one hands its buffer to its odd neighbour and waits; the p'
remaining ranks double recursively; the result goes back to the even ones (Thakur, Rabenseifner & Gropp 2005,
"Optimization of collective communication operations in MPICH", Sec. 4.4).
Both partners of an exchange add the same two operands (a + b on one side, b + a on the other: IEEE addition
is commutative), so every rank ends with a bitwise identical result.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from kernels.buffers import ScratchPool
from kernels.tags import Tag, tag_for, tag_upper_bound
from kernels.topology import Topology


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


class RecursiveDoublingAllreduce:
    """Sum a buffer across ``topology.ring_ranks`` in place (same contract as :class:`RingAllreduce`)."""

    def __init__(self, comm: MPI.Comm, topology: Topology):
        self.comm = comm
        self.topology = topology
        self._scratch = ScratchPool()
        self._tag_ub = tag_upper_bound(comm)

    def elements_sent(self, n: int) -> int:
        """Elements this rank sends in one call on ``n`` elements."""
        p = self.topology.ring_size
        if p == 1 or n == 0:
            return 0
        _, partners, role = doubling_plan(self.topology.ring_index, p)
        return n * (1 if role == "give" else len(partners) + (1 if role == "take" else 0))

    def __call__(self, buf: np.ndarray, key: int = 0) -> np.ndarray:
        topo = self.topology
        p, n = topo.ring_size, buf.size
        if p == 1 or n == 0:
            return buf
        ranks, idx = topo.ring_ranks, topo.ring_index
        tag = tag_for(Tag.RING, key, self._tag_ub)
        incoming = self._scratch.get(buf.dtype, n)
        vrank, partners, role = doubling_plan(idx, p)
        if role == "give":
            self.comm.Send(buf, ranks[idx + 1], tag)
            self.comm.Recv(buf, ranks[idx + 1], tag)
            return buf
        if role == "take":
            self.comm.Recv(incoming, ranks[idx - 1], tag)
            np.add(buf, incoming, out=buf)
        for partner in partners:
            self.comm.Sendrecv(buf, ranks[partner], tag, incoming, ranks[partner], tag)
            np.add(buf, incoming, out=buf)
        if role == "take":
            self.comm.Send(buf, ranks[idx - 1], tag)
        return buf

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
from kernels.reference import doubling_plan
from kernels.tags import Tag, tag_for, tag_upper_bound
from kernels.topology import Topology


class RecursiveDoublingAllreduce:
    """Sum a buffer across ``topology.ring_ranks`` in place (same contract as :class:`RingAllreduce`)."""

    def __init__(self, comm: MPI.Comm, topology: Topology):
        self.comm = comm
        self.topology = topology
        self._scratch = ScratchPool()
        self._tag_ub = tag_upper_bound(comm)
        # Everything that depends only on the topology is worked out once: at 8 B a call is mostly Python, and
        # recomputing the plan every call cost about a microsecond of the ~6 us it took at 2 ranks.
        self._p = topology.ring_size
        if self._p > 1:
            ranks, idx = topology.ring_ranks, topology.ring_index
            _, partners, self._role = doubling_plan(idx, self._p)
            self._partners = [ranks[q] for q in partners]
            self._neighbour = ranks[idx + 1] if self._role == "give" else ranks[idx - 1] if self._role else None
        self._tags: dict[int, int] = {}

    def elements_sent(self, n: int) -> int:
        """Elements this rank sends in one call on ``n`` elements."""
        p = self.topology.ring_size
        if p == 1 or n == 0:
            return 0
        _, partners, role = doubling_plan(self.topology.ring_index, p)
        return n * (1 if role == "give" else len(partners) + (1 if role == "take" else 0))

    def __call__(self, buf: np.ndarray, key: int = 0, add=np.add) -> np.ndarray:
        """Sum ``buf`` in place; ``add(a, b, out=)`` is the reduction (a compressed type's, e.g. bf16's)."""
        n = buf.size
        if self._p == 1 or n == 0:
            return buf
        tag = self._tags.get(key)
        if tag is None:
            tag = self._tags[key] = tag_for(Tag.RING, key, self._tag_ub)
        comm, role, neighbour = self.comm, self._role, self._neighbour
        if role == "give":
            comm.Send(buf, neighbour, tag)
            comm.Recv(buf, neighbour, tag)
            return buf
        incoming = self._scratch.like(buf, n)
        if role == "take":
            comm.Recv(incoming, neighbour, tag)
            add(buf, incoming, out=buf)
        for partner in self._partners:
            comm.Sendrecv(buf, partner, tag, incoming, partner, tag)
            add(buf, incoming, out=buf)
        if role == "take":
            comm.Send(buf, neighbour, tag)
        return buf

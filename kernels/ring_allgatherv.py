"""Ring all-gather of variable-length byte payloads from explicit point-to-point messages.

Sparse and quantised gradients (top-k, random-k, QSGD, sign) cannot be summed on the wire: every rank needs every
rank's payload, and payloads may differ in length (or be empty). In ``p - 1`` steps each rank passes to its right
neighbour the payload it received in the step before (its own first), as the ring all-reduce's all-gather half
does with chunks (Patarasuk & Yuan 2009): every rank sends ``p - 1`` payloads and receives as many, with no rank
in the middle. Each step sends the payload's length (one int64) before the payload, so the receiver sizes its
buffer exactly. Cost: ``2 (p - 1) alpha + beta * (sum of the other ranks' payload bytes + 8 (p - 1))``.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from kernels.tags import Tag, tag_for, tag_upper_bound
from kernels.topology import Topology


class RingAllgatherv:
    def __init__(self, comm: MPI.Comm, topology: Topology):
        self.comm, self.topology = comm, topology
        self._tag_ub = tag_upper_bound(comm)
        self._size_out, self._size_in = np.empty(1, np.int64), np.empty(1, np.int64)

    def __call__(self, payload: np.ndarray, key: int = 0) -> tuple[list[np.ndarray], int]:
        """Every ring member's ``payload`` (a contiguous 1-D uint8 array), in ring order, and the bytes this rank
        sent. ``key`` separates the tags of calls in flight together; every rank passes the same key."""
        if payload.dtype != np.uint8 or payload.ndim != 1 or not payload.flags.c_contiguous:
            raise TypeError("ring all-gather payloads are contiguous 1-D uint8 arrays")
        topo = self.topology
        p, idx = topo.ring_size, topo.ring_index
        blocks: list[np.ndarray | None] = [None] * p
        blocks[idx] = payload
        tag = tag_for(Tag.GATHERV, key, self._tag_ub)
        sent = 0
        for step in range(p - 1):
            outgoing = blocks[(idx - step) % p]
            self._size_out[0] = outgoing.size
            self.comm.Sendrecv(self._size_out, topo.right, tag, self._size_in, topo.left, tag)
            incoming = np.empty(int(self._size_in[0]), dtype=np.uint8)
            self.comm.Sendrecv(outgoing, topo.right, tag, incoming, topo.left, tag)
            blocks[(idx - step - 1) % p] = incoming
            sent += self._size_out.nbytes + outgoing.size
        return blocks, sent

"""All-gather, reduce-scatter and broadcast from explicit point-to-point messages, as the ZeRO/FSDP-minded
compare them with MPI's (``python -m bench micro --op allgather|reduce-scatter|broadcast``).

Buffers are contiguous 1-D numpy arrays of ``p`` equal blocks (ring order), as ``MPI_Allgather`` and
``MPI_Reduce_scatter_block`` take them; ring position ``i`` owns block ``i``.

- All-gather and reduce-scatter: the two halves of the ring all-reduce (Patarasuk & Yuan 2009), ``p - 1``
  ``Sendrecv`` steps of one block to the right neighbour, with the all-reduce's own schedules
  (:mod:`kernels.reference`) shifted by one position so that position ``i`` ends with block ``i``. Each rank
  sends ``(p - 1) n / p`` elements: cost ``(p - 1) alpha + ((p - 1) / p) n beta``.
- Broadcast from the first ring position: a binomial tree (position ``i`` > 0 receives from ``i`` minus its
  lowest set bit, then sends to ``i + 2^k`` for every ``2^k`` below that bit, largest first; the root sends to
  every ``2^k < p``): ``ceil(log2 p)`` rounds, cost
  ``ceil(log2 p) (alpha + n beta)``.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from kernels.reference import all_gather_schedule, reduce_scatter_schedule, ring_chunks
from kernels.tags import Tag, tag_for, tag_upper_bound
from kernels.topology import Topology


def _blocks(buf: np.ndarray, p: int) -> list[tuple[int, int]]:
    if buf.ndim != 1 or not buf.flags.c_contiguous or buf.size % p:
        raise ValueError(f"a contiguous 1-D buffer of {p} equal blocks is needed, got shape {buf.shape}")
    return ring_chunks(buf.size, p)


class RingAllgather:
    def __init__(self, comm: MPI.Comm, topology: Topology):
        self.comm, self.topology, self._tag = comm, topology, tag_for(Tag.BLOCKS, 0, tag_upper_bound(comm))

    def __call__(self, buf: np.ndarray) -> np.ndarray:
        """Every position's block ``i`` (already in place in ``buf``) into every position's ``buf``."""
        topo = self.topology
        p, idx = topo.ring_size, topo.ring_index
        chunks = _blocks(buf, p)
        for step in range(p - 1):
            send_c, recv_c = all_gather_schedule(idx - 1, p, step)
            (slo, shi), (rlo, rhi) = chunks[send_c], chunks[recv_c]
            self.comm.Sendrecv(buf[slo:shi], topo.right, self._tag, buf[rlo:rhi], topo.left, self._tag)
        return buf


class RingReduceScatter:
    def __init__(self, comm: MPI.Comm, topology: Topology):
        self.comm, self.topology, self._tag = comm, topology, tag_for(Tag.BLOCKS, 1, tag_upper_bound(comm))

    def __call__(self, buf: np.ndarray) -> np.ndarray:
        """Sum ``buf`` over the ring blockwise; returns this position's block of the sum (a view of ``buf``;
        the other blocks hold partial sums)."""
        topo = self.topology
        p, idx = topo.ring_size, topo.ring_index
        chunks = _blocks(buf, p)
        incoming = np.empty(buf.size // p, dtype=buf.dtype)
        for step in range(p - 1):
            send_c, recv_c = reduce_scatter_schedule(idx - 1, p, step)
            (slo, shi), (rlo, rhi) = chunks[send_c], chunks[recv_c]
            self.comm.Sendrecv(buf[slo:shi], topo.right, self._tag, incoming, topo.left, self._tag)
            np.add(buf[rlo:rhi], incoming, out=buf[rlo:rhi])
        lo, hi = chunks[idx]
        return buf[lo:hi]


class BinomialBroadcast:
    def __init__(self, comm: MPI.Comm, topology: Topology):
        self.comm, self.topology, self._tag = comm, topology, tag_for(Tag.BCAST, 0, tag_upper_bound(comm))

    def __call__(self, buf: np.ndarray) -> np.ndarray:
        """The first ring position's ``buf`` into every position's ``buf``."""
        topo = self.topology
        p, idx, ranks = topo.ring_size, topo.ring_index, topo.ring_ranks
        bit = 1
        while bit < p and not idx & bit:  # the lowest set bit of idx is where it receives from
            bit <<= 1
        if idx:
            self.comm.Recv(buf, ranks[idx - bit], self._tag)
        bit = bit >> 1 if idx else 1 << max(0, (p - 1).bit_length() - 1)
        while bit >= 1:  # children idx + bit for the bits below the one it received on
            if idx + bit < p:
                self.comm.Send(buf, ranks[idx + bit], self._tag)
            bit >>= 1
        return buf

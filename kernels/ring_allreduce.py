"""Ring all-reduce from explicit point-to-point messages, and the naive reference beside it.

Ring: a reduce-scatter of ``p - 1`` ``Sendrecv`` steps followed by an all-gather of ``p - 1`` steps, each step
moving one ``n / p`` chunk to the right neighbour, so every rank sends ``2 (p - 1) n / p`` elements: the
bandwidth-optimal schedule (Patarasuk & Yuan 2009). Cost model: ``2 (p - 1) alpha + 2 ((p - 1) / p) n beta``.

Both kernels reduce in place on a contiguous 1-D numpy buffer (sum; the caller divides for a mean) and use the
buffer API only: no pickling. The ring also takes a buffer that behaves as one (:func:`kernels.buffers.check_buffer`:
device memory handed to a CUDA-aware MPI). They are correct for any ring size (1, 2, odd, non-power-of-two), for
buffers shorter than the ring, and for empty buffers.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from kernels.buffers import ScratchPool, check_buffer
from kernels.recursive_doubling import RecursiveDoublingAllreduce
from kernels.reference import SMALL_BYTES, all_gather_schedule, reduce_scatter_schedule, ring_chunks, ring_elements_sent
from kernels.tags import Tag, tag_for, tag_upper_bound
from kernels.topology import Topology


class RingAllreduce:
    """Sum a buffer across ``topology.ring_ranks`` in place. Buffers smaller than ``small_bytes`` take the
    recursive-doubling path (as MPI libraries switch algorithms by size); ``small_bytes=0`` forces the ring.
    Holds one scratch buffer per dtype so repeated calls (one per layer per step) allocate nothing."""

    def __init__(self, comm: MPI.Comm, topology: Topology, small_bytes: int = SMALL_BYTES):
        self.comm = comm
        self.topology = topology
        self.small_bytes = small_bytes
        self._small = RecursiveDoublingAllreduce(comm, topology)
        self._scratch = ScratchPool()
        self._tag_ub = tag_upper_bound(comm)

    def elements_sent(self, n: int, itemsize: int = 4, path_bytes: int | None = None) -> int:
        """Elements this rank sends in one call on ``n`` elements of ``itemsize`` bytes (on the path taken)."""
        if (n * itemsize if path_bytes is None else path_bytes) < self.small_bytes:
            return self._small.elements_sent(n)
        return ring_elements_sent(n, self.topology.ring_size, self.topology.ring_index)

    def __call__(self, buf: np.ndarray, key: int = 0, add=np.add, path_bytes: int | None = None) -> np.ndarray:
        """All-reduce ``buf`` (sum) in place and return it. ``key`` (e.g. the layer index) separates the tags of
        concurrent calls; every rank must pass the same key for the same buffer. ``add(a, b, out=)`` is the
        reduction: numpy's, or a compressed wire type's (bf16 adds through float32). ``path_bytes``: choose the
        algorithm as for a buffer of this size (a compressed buffer takes its dense buffer's path, so that fp16
        sends exactly half)."""
        check_buffer(buf)
        if (buf.nbytes if path_bytes is None else path_bytes) < self.small_bytes:
            return self._small(buf, key, add)
        topo = self.topology
        p = topo.ring_size
        n = buf.size
        if p == 1 or n == 0:
            return buf
        idx, left, right = topo.ring_index, topo.left, topo.right
        chunks = ring_chunks(n, p)
        scratch = self._scratch.like(buf, chunks[0][1] - chunks[0][0])
        tag = tag_for(Tag.RING, key, self._tag_ub)
        sendrecv = self.comm.Sendrecv
        for step in range(p - 1):
            send_c, recv_c = reduce_scatter_schedule(idx, p, step)
            (slo, shi), (rlo, rhi) = chunks[send_c], chunks[recv_c]
            incoming = scratch[: rhi - rlo]
            sendrecv(buf[slo:shi], right, tag, incoming, left, tag)
            target = buf[rlo:rhi]
            add(target, incoming, out=target)
        for step in range(p - 1):
            send_c, recv_c = all_gather_schedule(idx, p, step)
            (slo, shi), (rlo, rhi) = chunks[send_c], chunks[recv_c]
            sendrecv(buf[slo:shi], right, tag, buf[rlo:rhi], left, tag)
        return buf


class NaiveAllreduce:
    """Reference all-reduce: every ring member sends its buffer to the first ring rank, which sums in ring
    order and sends the result back. ``2 (p - 1)`` full-size messages through one rank: slow on purpose, kept
    as an oracle for tests and a baseline for benchmarks."""

    def __init__(self, comm: MPI.Comm, topology: Topology):
        self.comm = comm
        self.topology = topology
        self._tag_ub = tag_upper_bound(comm)

    def __call__(self, buf: np.ndarray, key: int = 0) -> np.ndarray:
        _check_buffer(buf)
        topo = self.topology
        if topo.ring_size == 1 or buf.size == 0:
            return buf
        root = topo.ring_ranks[0]
        tag = tag_for(Tag.NAIVE, key, self._tag_ub)
        if topo.rank == root:
            incoming = np.empty_like(buf)
            for r in topo.ring_ranks[1:]:
                self.comm.Recv(incoming, source=r, tag=tag)
                np.add(buf, incoming, out=buf)
            for r in topo.ring_ranks[1:]:
                self.comm.Send(buf, dest=r, tag=tag)
        else:
            self.comm.Send(buf, dest=root, tag=tag)
            self.comm.Recv(buf, source=root, tag=tag)
        return buf


def _check_buffer(buf: np.ndarray) -> None:
    if not isinstance(buf, np.ndarray) or buf.ndim != 1 or not buf.flags.c_contiguous:
        raise TypeError("all-reduce kernels need a contiguous 1-D numpy array")

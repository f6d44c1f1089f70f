"""Hierarchical (two-level) all-reduce from explicit point-to-point messages, for ranks spread over nodes.

Large buffers take three stages, so that each byte crosses a node boundary only in the middle one, on K rings
in parallel (Horovod's hierarchical all-reduce; the 2D decomposition of Jia et al. 2018, "Highly scalable deep
learning training system with mixed-precision", and BlueConnect, Cho et al. 2019):

1. reduce-scatter inside each node: the buffer is cut into C chunks, C = the largest node's rank count, and the
   rank at local index ``c mod K_j`` of node j (:func:`kernels.topology.chunk_owner`) ends with chunk c summed
   over its node (a rank of a smaller node owns several chunks: unequal nodes work);
2. all-reduce of each chunk among its owners, one per node (a ring, or recursive doubling when the chunk is
   small: :class:`kernels.ring_allreduce.RingAllreduce` on that sub-ring);
3. all-gather inside each node.

With K ranks on each of N nodes a rank sends 2 (K - 1) n / K elements inside its node and 2 (N - 1) n / (N K)
across nodes, against the flat ring's 2 (p - 1) n / p, most of which cross a boundary when the ring passes
through every node. Small buffers (below ``small_bytes``, latency-bound) take fewer, larger steps instead:
each node sums onto its first rank, the first ranks all-reduce among themselves, and each sends the result
back to its node, so only one message per node crosses the network per round of the leaders' all-reduce.

Sums are taken in another order than a flat ring's, so results agree with ``MPI_Allreduce`` to float32 rounding
(exactly, for integer-valued data: tests/mpi/test_hierarchical.py).
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from kernels.reference import SMALL_BYTES, all_gather_schedule, reduce_scatter_schedule, ring_chunks
from kernels.ring_allreduce import RingAllreduce, _check_buffer
from kernels.tags import Tag, tag_for, tag_upper_bound
from kernels.topology import Topology, chunk_owner


class HierarchicalAllreduce:
    """Sum a buffer across ``topology.ring_ranks`` in place, node by node (``topology.nodes``). The same call
    as :class:`RingAllreduce` (``buf, key, add, path_bytes``), so a strategy takes either."""

    def __init__(self, comm: MPI.Comm, topology: Topology, small_bytes: int = SMALL_BYTES):
        self.comm, self.topology, self.small_bytes = comm, topology, small_bytes
        groups = topology.node_groups
        self.node = next(g for g in groups if topology.rank in g)
        self.local = self.node.index(topology.rank)
        self.chunks = max(len(g) for g in groups)  # C
        self.owned = [c for c in range(self.chunks) if chunk_owner(c, len(self.node)) == self.local]
        self.inter = {c: RingAllreduce(comm, topology.sub_ring(tuple(g[chunk_owner(c, len(g))] for g in groups)),
                                       small_bytes) for c in self.owned}  # fmt: skip
        first_ranks = topology.sub_ring(tuple(g[0] for g in groups))
        self.leaders = RingAllreduce(comm, first_ranks, small_bytes) if self.local == 0 else None
        self.intra = topology.sub_ring(self.node)
        self._tag_ub = tag_upper_bound(comm)

    # ---- the layout of a buffer ----------------------------------------------------------------------------
    def _blocks(self, n: int) -> tuple[list[tuple[int, int]], list[list[tuple[int, int]]]]:
        """The buffer's chunks in owner order: each local rank's block of the reordered buffer, and for each
        local rank the (buffer chunk, position in the reordered buffer) pairs of its chunks."""
        chunks = ring_chunks(n, self.chunks)
        blocks, pieces, at = [], [], 0
        for local in range(len(self.node)):
            start, mine = at, []
            for c in range(self.chunks):
                if chunk_owner(c, len(self.node)) == local:
                    lo, hi = chunks[c]
                    mine.append(((lo, hi), (at, at + hi - lo)))
                    at += hi - lo
            blocks.append((start, at))
            pieces.append(mine)
        return blocks, pieces

    # ---- the call --------------------------------------------------------------------------------------
    def __call__(self, buf: np.ndarray, key: int = 0, add=np.add, path_bytes: int | None = None) -> np.ndarray:
        _check_buffer(buf)
        if self.topology.ring_size == 1 or buf.size == 0:
            return buf
        if (buf.nbytes if path_bytes is None else path_bytes) < self.small_bytes:
            return self._small(buf, key, add)
        return self._large(buf, key, add, path_bytes)

    def _small(self, buf: np.ndarray, key: int, add) -> np.ndarray:
        """Sum onto the node's first rank, all-reduce among the first ranks, send the result back."""
        tag, first = tag_for(Tag.NODE, key, self._tag_ub), self.node[0]
        if self.local:
            self.comm.Send(buf, first, tag)
            self.comm.Recv(buf, first, tag)
            return buf
        incoming = np.empty_like(buf)
        for rank in self.node[1:]:
            self.comm.Recv(incoming, rank, tag)
            add(buf, incoming, out=buf)
        self.leaders(buf, key, add, path_bytes=0)  # already the small path's size class: force its algorithm
        for rank in self.node[1:]:
            self.comm.Send(buf, rank, tag)
        return buf

    def _large(self, buf: np.ndarray, key: int, add, path_bytes: int | None) -> np.ndarray:
        blocks, pieces = self._blocks(buf.size)
        in_order = len(self.node) == self.chunks  # a node of the largest size: chunk i is local rank i's, in place
        work = buf if in_order else np.empty_like(buf)
        if not in_order:
            for (lo, hi), (a, b) in (p for mine in pieces for p in mine):
                work[a:b] = buf[lo:hi]
        tag = tag_for(Tag.NODE, key, self._tag_ub)
        self._reduce_scatter(work, blocks, tag, add)
        for index, (_, (a, b)) in zip(self.owned, pieces[self.local]):
            chunk_bytes = None if path_bytes is None else path_bytes * (b - a) // buf.size
            self.inter[index](work[a:b], key * self.chunks + index, add, path_bytes=chunk_bytes)
        self._all_gather(work, blocks, tag)
        if not in_order:
            for (lo, hi), (a, b) in (p for mine in pieces for p in mine):
                buf[lo:hi] = work[a:b]
        return buf

    def _reduce_scatter(self, work: np.ndarray, blocks, tag: int, add) -> None:
        """Ring reduce-scatter of unequal blocks inside the node: local index i ends with block i summed."""
        ring, p = self.intra, len(self.node)
        incoming = np.empty(max((hi - lo for lo, hi in blocks), default=0), dtype=work.dtype)
        for step in range(p - 1):
            send_b, recv_b = reduce_scatter_schedule(ring.ring_index - 1, p, step)
            (slo, shi), (rlo, rhi) = blocks[send_b], blocks[recv_b]
            got = incoming[: rhi - rlo]
            self.comm.Sendrecv(work[slo:shi], ring.right, tag, got, ring.left, tag)
            add(work[rlo:rhi], got, out=work[rlo:rhi])

    def _all_gather(self, work: np.ndarray, blocks, tag: int) -> None:
        ring, p = self.intra, len(self.node)
        for step in range(p - 1):
            send_b, recv_b = all_gather_schedule(ring.ring_index - 1, p, step)
            (slo, shi), (rlo, rhi) = blocks[send_b], blocks[recv_b]
            self.comm.Sendrecv(work[slo:shi], ring.right, tag, work[rlo:rhi], ring.left, tag)

    # ---- accounting ------------------------------------------------------------------------------------
    def elements_sent(self, n: int, itemsize: int = 4, path_bytes: int | None = None) -> int:
        """Elements this rank sends in one call on ``n`` elements (inside its node and across nodes)."""
        return sum(self.elements_by_link(n, itemsize, path_bytes))

    def elements_by_link(self, n: int, itemsize: int = 4, path_bytes: int | None = None) -> tuple[int, int]:
        """(inside the node, across nodes) elements this rank sends in one call on ``n`` elements."""
        if self.topology.ring_size == 1 or n == 0:
            return 0, 0
        K = len(self.node)
        if (n * itemsize if path_bytes is None else path_bytes) < self.small_bytes:
            inside = n if self.local else (K - 1) * n
            return inside, 0 if self.local else self.leaders.elements_sent(n, itemsize, path_bytes=0)
        blocks, pieces = self._blocks(n)
        inside = 0
        for step in range(K - 1):  # the same blocks the reduce-scatter and then the all-gather send
            for schedule in (reduce_scatter_schedule, all_gather_schedule):
                lo, hi = blocks[schedule(self.intra.ring_index - 1, K, step)[0]]
                inside += hi - lo
        across = 0
        for c, (_, (a, b)) in zip(self.owned, pieces[self.local]):
            chunk_bytes = None if path_bytes is None else path_bytes * (b - a) // n
            across += self.inter[c].elements_sent(b - a, itemsize, chunk_bytes)
        return inside, across

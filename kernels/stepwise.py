"""The all-reduce kernels one message step at a time, for a caller that advances them between other work.

``ring --overlap --overlap-progress hooks`` advances a bucket's all-reduce from the gradient hooks of the backward
pass (no communication thread): each step posts its non-blocking send and receive and yields the requests; the
caller tests them when it gets control and resumes the generator once they are complete. The schedules, chunks,
tags and additions are exactly those of :class:`kernels.ring_allreduce.RingAllreduce` and
:class:`kernels.recursive_doubling.RecursiveDoublingAllreduce` (same size threshold), so the sums are bitwise the
same as the blocking kernels' (tested). Each call has its own scratch buffer: several may be in flight.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from mpi4py import MPI

from kernels.buffers import empty_like
from kernels.reference import all_gather_schedule, doubling_plan, reduce_scatter_schedule, ring_chunks
from kernels.ring_allreduce import RingAllreduce
from kernels.tags import Tag, tag_for, tag_upper_bound

Steps = Iterator[list[MPI.Request]]


def allreduce_steps(kernel: RingAllreduce, buf: np.ndarray, key: int) -> Steps:
    """Sum ``buf`` over the kernel's ring in place, yielding the requests of each message step."""
    if kernel.topology.ring_size == 1 or buf.size == 0:
        return iter(())
    if buf.nbytes < kernel.small_bytes:
        return _doubling_steps(kernel, buf, key)
    return _ring_steps(kernel, buf, key)


def _ring_steps(kernel: RingAllreduce, buf: np.ndarray, key: int) -> Steps:
    topo, comm = kernel.topology, kernel.comm
    p, idx, left, right = topo.ring_size, topo.ring_index, topo.left, topo.right
    chunks = ring_chunks(buf.size, p)
    scratch = empty_like(buf, chunks[0][1] - chunks[0][0])
    tag = tag_for(Tag.RING, key, tag_upper_bound(comm))
    for step in range(p - 1):
        send_c, recv_c = reduce_scatter_schedule(idx, p, step)
        (slo, shi), (rlo, rhi) = chunks[send_c], chunks[recv_c]
        incoming = scratch[: rhi - rlo]
        yield [comm.Isend(buf[slo:shi], right, tag), comm.Irecv(incoming, left, tag)]
        target = buf[rlo:rhi]
        np.add(target, incoming, out=target)
    for step in range(p - 1):
        send_c, recv_c = all_gather_schedule(idx, p, step)
        (slo, shi), (rlo, rhi) = chunks[send_c], chunks[recv_c]
        yield [comm.Isend(buf[slo:shi], right, tag), comm.Irecv(buf[rlo:rhi], left, tag)]


def _doubling_steps(kernel: RingAllreduce, buf: np.ndarray, key: int) -> Steps:
    """Recursive doubling as :meth:`RecursiveDoublingAllreduce.__call__` does it (the same plan and order)."""
    topo, comm = kernel.topology, kernel.comm
    tag = tag_for(Tag.RING, key, tag_upper_bound(comm))
    ranks, idx = topo.ring_ranks, topo.ring_index
    _, partners, role = doubling_plan(idx, topo.ring_size)
    neighbour = ranks[idx + 1] if role == "give" else ranks[idx - 1] if role else None
    if role == "give":
        yield [comm.Isend(buf, neighbour, tag)]
        yield [comm.Irecv(buf, neighbour, tag)]
        return
    incoming = empty_like(buf, buf.size)
    if role == "take":
        yield [comm.Irecv(incoming, neighbour, tag)]
        np.add(buf, incoming, out=buf)
    for partner in (ranks[q] for q in partners):
        yield [comm.Isend(buf, partner, tag), comm.Irecv(incoming, partner, tag)]
        np.add(buf, incoming, out=buf)
    if role == "take":
        yield [comm.Isend(buf, neighbour, tag)]

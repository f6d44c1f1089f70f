"""The two links of the two-level cost model (:mod:`kernels.cost`), measured by ping-pong (one-way = round trip / 2,
OSU ``osu_latency``): ``inside`` between the first two ranks of a node, ``across`` between the first ranks of the
first two nodes. ``--allreduce auto`` measures both at set-up, at a small and a large size, and fits alpha + n beta
(Hockney 1994) to each; ``micro --op links`` times them over a range of sizes (:mod:`bench.micro.links`). Both run
on the strategy's communicator, so an emulated link (:mod:`bench.comm.emulated_link`) is measured as it paces."""

from __future__ import annotations

import time

import numpy as np

from kernels.cost import FREE, Link
from kernels.tags import Tag, tag_for

SIZES = (8, 1 << 20)
REPS = {8: 30, 1 << 20: 6}
"""Round trips per size at set-up; the median is kept (about 0.2 s over a 1 Gb/s link, far less in shared memory)."""


def link_pairs(groups) -> dict[str, tuple[int, int]]:
    """The ranks that measure each link, from the ranks grouped by node (a layout may lack one: absent)."""
    pairs = {}
    shared = next((g for g in groups if len(g) > 1), None)
    if shared:
        pairs["inside"] = (shared[0], shared[1])
    if len(groups) > 1:
        pairs["across"] = (groups[0][0], groups[1][0])
    return pairs


def ping_pong(comm, a: int, b: int, send: np.ndarray, recv: np.ndarray, tag: int):
    """One round trip: ``a`` sends ``send``, ``b`` returns what it received into ``recv``; other ranks do nothing."""

    def op():
        if comm.rank == a:
            comm.Send(send, b, tag)
            comm.Recv(recv, b, tag)
        elif comm.rank == b:
            comm.Recv(recv, a, tag)
            comm.Send(recv, a, tag)

    return op


def one_way_seconds(comm, a: int, b: int, nbytes: int, reps: int) -> float:
    """Collective: median one-way time of ``reps`` round trips of ``nbytes`` between ranks ``a`` and ``b`` (0.0 on
    the other ranks, which wait in a barrier). The first round trip sets the connection up and is not kept."""
    buf = np.zeros(nbytes, dtype=np.uint8)
    trip, times = ping_pong(comm, a, b, buf, buf, tag_for(Tag.MICRO, 2)), []
    if comm.rank in (a, b):
        for _ in range(reps + 1):
            start = time.perf_counter()
            trip()
            times.append((time.perf_counter() - start) / 2)
    comm.Barrier()
    return float(np.median(times[1:])) if times else 0.0


def fit(small: tuple[int, float], large: tuple[int, float]) -> Link:
    """alpha and beta through two (bytes, seconds) points, neither negative."""
    (n0, t0), (n1, t1) = small, large
    beta = max((t1 - t0) / (n1 - n0), 0.0)
    return Link(max(t0 - n0 * beta, 0.0), beta)


def measure_link(comm, a: int, b: int) -> Link:
    """Collective: the link between ranks ``a`` and ``b``, fitted on ``a`` and broadcast from there."""
    points = [(n, one_way_seconds(comm, a, b, n, REPS[n])) for n in SIZES]
    return comm.bcast(fit(points[0], points[1]) if comm.rank == a else None, root=a)


def measure_links(comm, node_groups) -> tuple[Link, Link]:
    """Collective: (inside a node, across nodes). A layout without two ranks on one node, or without two nodes,
    has no such link: it costs nothing in the model (:data:`kernels.cost.FREE`)."""
    pairs = link_pairs(node_groups)
    return tuple(measure_link(comm, *pairs[name]) if name in pairs else FREE for name in ("inside", "across"))

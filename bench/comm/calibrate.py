"""The two links of the two-level cost model (:mod:`kernels.cost`), measured by ping-pong (one-way = round trip / 2,
OSU ``osu_latency``): ``inside`` between the first two ranks of a node, ``across`` between the first ranks of the
first two nodes, then between the ranks of those nodes in pairs all at once (how much of the link's time per byte
messages sent together share: the wire). ``--allreduce auto`` measures both at set-up, at a small and a large size,
and fits alpha + n beta (Hockney 1994) to each; ``micro --op links`` times them over a range of sizes
(:mod:`bench.micro.links`). Both run on the strategy's communicator, so an emulated link
(:mod:`bench.comm.emulated_link`) is measured as it paces."""

from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

from kernels.cost import FREE, Link
from kernels.tags import Tag, tag_for
from kernels.waiting import wait_any

SIZES = (8, 1 << 20)
REPS = {8: 30, 1 << 20: 6}
"""Round trips per size at set-up; the median is kept (about 0.3 s over a 1 Gb/s link, far less in shared memory)."""


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
    """Collective: median one-way time of ``reps`` round trips of ``nbytes`` between ranks ``a`` and ``b``, the same
    number on every rank. The first round trip sets the connection up and is not kept. Ranks in no pair wait in a
    barrier that gives their core away (MPICH's blocking one spins: on a busy host it slows the pair)."""
    buf, times = np.zeros(nbytes, dtype=np.uint8), []
    comm.Barrier()
    if comm.rank in (a, b):
        trip = ping_pong(comm, a, b, buf, buf, tag_for(Tag.MICRO, 2))
        for _ in range(reps + 1):
            start = time.perf_counter()
            trip()
            times.append((time.perf_counter() - start) / 2)
    wait_any([comm.Ibarrier()])
    return comm.allreduce(float(np.median(times[1:])) if times else 0.0, op=MPI.MAX)


def burst_seconds(comm, pairs: list[tuple[int, int]], nbytes: int, reps: int) -> float:
    """Collective: every pair's first rank sends ``nbytes`` to its second at once (after a barrier), which answers
    with one byte; the median over ``reps`` bursts of the slowest sender's time to its answer. A ping-pong cannot
    load a link with several messages: pairs drift into taking turns. Ranks in no pair only join the barriers."""
    buf, ack, tag, times = np.zeros(nbytes, dtype=np.uint8), np.zeros(1, dtype=np.uint8), tag_for(Tag.MICRO, 4), []
    mine = next(((a, b) for a, b in pairs if comm.rank in (a, b)), None)
    for _ in range(reps + 1):
        comm.Barrier()  # MPICH's spins, so the senders leave it together (a yielding one let them drift apart by 1 ms)
        start = time.perf_counter()
        if mine is not None and comm.rank == mine[0]:
            comm.Send(buf, mine[1], tag)
            comm.Recv(ack, mine[1], tag)
        elif mine is not None:
            comm.Recv(buf, mine[0], tag)
            comm.Send(ack, mine[0], tag)
        times.append(time.perf_counter() - start)
    slowest = np.empty(reps + 1)
    comm.Allreduce(np.array(times), slowest, op=MPI.MAX)
    return float(np.median(slowest[1:]))


def fit(small: tuple[int, float], large: tuple[int, float]) -> Link:
    """alpha and beta through two (bytes, seconds) points, neither negative."""
    (n0, t0), (n1, t1) = small, large
    beta = max((t1 - t0) / (n1 - n0), 0.0)
    return Link(max(t0 - n0 * beta, 0.0), beta)


def measure_link(comm, pairs: list[tuple[int, int]]) -> Link:
    """Collective: the link between the ranks of ``pairs[0]`` (every rank fits the same numbers); with several pairs
    (the ranks of one node and of another), also the part of its per-byte time that messages sent at once share:
    (burst of k - burst of 1) / ((k - 1) n) at the large size, between 0 and beta."""
    (a, b), n = pairs[0], SIZES[-1]
    link = fit(*[(size, one_way_seconds(comm, a, b, size, REPS[size])) for size in SIZES])
    if len(pairs) > 1:
        alone, together = burst_seconds(comm, pairs[:1], n, REPS[n]), burst_seconds(comm, pairs, n, REPS[n])
        shared = (together - alone) / ((len(pairs) - 1) * n)
        link = Link(link.alpha, link.beta, min(max(shared, 0.0), link.beta))
    return link


def measure_links(comm, node_groups) -> tuple[Link, Link]:
    """Collective: (inside a node, across nodes). A layout without two ranks on one node, or without two nodes,
    has no such link: it costs nothing in the model (:data:`kernels.cost.FREE`). Across nodes, the ranks of the
    first node pair with those of the second, as many as both have."""
    pairs = link_pairs(node_groups)
    inside = measure_link(comm, [pairs["inside"]]) if "inside" in pairs else FREE
    if "across" not in pairs:
        return inside, FREE
    return inside, measure_link(comm, list(zip(node_groups[0], node_groups[1])))

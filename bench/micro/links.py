"""``micro --op links``: the two links of the two-level cost model (:mod:`kernels.cost`), each by ping-pong, one-way
= round trip / 2 (OSU ``osu_latency``): ``inside`` between the first two ranks of a node, ``across`` between the
first ranks of the first two nodes. Nodes are the machine's, or virtual with ``--ranks-per-node K``; with
``--emulate-link`` the across pair's messages are paced as a training run's are (:mod:`bench.comm.emulated_link`).
``analysis`` fits alpha and beta to each (``analysis/models/two_level.py``)."""

from __future__ import annotations

import numpy as np

from bench.comm.calibrate import link_pairs, ping_pong
from bench.comm.emulated_link import LinkSpec, emulated
from bench.micro.checks import mismatches, strict_or
from bench.micro.operations import payload
from bench.runtime.errors import UsageError
from bench.runtime.launch import node_ids
from kernels.tags import Tag, tag_for
from kernels.topology import node_groups, virtual_nodes


def layout(comm, ranks_per_node: int) -> tuple[int, ...]:
    """Collective: the node of every rank, virtual (``--ranks-per-node``) or the machine's; recorded in the file."""
    return virtual_nodes(comm.size, ranks_per_node) if ranks_per_node else node_ids(comm)


def measuring_pairs(comm, ranks_per_node: int, emulate: str, rank_0_times: bool):
    """Collective: the node of every rank and the pairs that measure each link; bad options are one message."""
    if ranks_per_node < 0:
        raise UsageError(f"--ranks-per-node must be >= 0 (0: the real nodes), got {ranks_per_node}")
    if emulate:
        try:
            LinkSpec.parse(emulate)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    nodes = layout(comm, ranks_per_node)
    pairs = link_pairs(node_groups(tuple(range(comm.size)), nodes))
    if len(pairs) < 2:
        raise UsageError(
            f"micro --op links needs two nodes and a node of two ranks; nodes of these {comm.size} ranks: "
            f"{list(nodes)} (declare virtual ones with --ranks-per-node)"
        )
    if rank_0_times and any(0 not in pair for pair in pairs.values()):
        raise UsageError(
            f"micro --op links: rank 0 is not in both measuring pairs ({pairs}) and the osu method times on rank 0; "
            "use --latency-method barrier"
        )
    return nodes, pairs


def bench_links(
    comm, sizes, timer, checks=None, ranks_per_node: int = 0, emulate: str = "", rank_0_times=False
) -> dict:
    """Both links, interleaved at each size; every round trip's payload is checked on both ends afterwards.
    ``rank_0_times``: the timer takes rank 0's clock (OSU's method), so rank 0 must be in both pairs."""
    nodes, pairs = measuring_pairs(comm, ranks_per_node, emulate, rank_0_times)
    link_comm = emulated(comm, emulate, nodes)
    tag, checks, res = tag_for(Tag.MICRO, 3), strict_or(checks, comm), {name: [] for name in pairs}
    for size in sizes:
        send = payload(size)
        recv = np.zeros(size, dtype=np.uint8)
        ops = {name: ping_pong(link_comm, a, b, send, recv, tag) for name, (a, b) in pairs.items()}
        times = timer(ops, size, lambda _name, recv=recv: recv.fill(0))
        for name, (a, b) in pairs.items():
            res[name].append(times[name] / 2)
            recv.fill(0)
            ops[name]()
            checks.record(name, mismatches(recv, send) if comm.rank in (a, b) else 0, f"{name} link, {size} bytes")
    return res

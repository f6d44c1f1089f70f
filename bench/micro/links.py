"""``micro --op links``: the two links of the two-level cost model (:mod:`kernels.cost`), each by ping-pong, one-way
= round trip / 2 (OSU ``osu_latency``): ``inside`` between the first two ranks of a node, ``across`` between the
first ranks of the first two nodes. Nodes are the machine's, or virtual with ``--ranks-per-node K``; with
``--emulate-link`` the across pair's messages are paced as a training run's are (:mod:`bench.comm.emulated_link`).
``analysis`` fits alpha and beta to each (``analysis/models/two_level.py``)."""

from __future__ import annotations

import numpy as np

from bench.comm.calibrate import link_pairs, ping_pong
from bench.comm.emulated_link import emulated
from bench.micro.checks import mismatches, strict_or
from bench.micro.operations import payload
from bench.runtime.errors import UsageError
from bench.runtime.launch import node_ids
from kernels.tags import Tag, tag_for
from kernels.topology import node_groups, virtual_nodes


def bench_links(comm, sizes, timer, checks=None, ranks_per_node: int = 0, emulate: str = "") -> dict:
    """Both links, interleaved at each size; every round trip's payload is checked on both ends afterwards."""
    nodes = virtual_nodes(comm.size, ranks_per_node) if ranks_per_node else node_ids(comm)
    pairs = link_pairs(node_groups(tuple(range(comm.size)), nodes))
    if len(pairs) < 2:
        raise UsageError(
            f"micro --op links needs two nodes and a node of two ranks; nodes of these {comm.size} ranks: "
            f"{list(nodes)} (declare virtual ones with --ranks-per-node)"
        )
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

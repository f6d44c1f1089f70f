"""Host-side and tree aggregation (``--aggregation host|tree``): a client rank folds its own sampled clients into
one weighted partial sum and sends one report per round, as FedML Parrot's hierarchical aggregation does; with
``tree``, the round's hosts first combine their reports pairwise in ceil(log2 H) steps (our own point-to-point
messages, no MPI_Reduce), inside each node first and then between the nodes' leaders (:func:`node_tree`), and
rank 0 receives one.

A report is three messages on the FED_CONTROL tags 1-3: a header ``[records, weight]`` (float64), the per-client
records (``REPORT_FIELDS``, float64) and the partial sum ``sum_k n_k w_k`` (float64, the model's size: twice the
bytes of a float32 model, for the accumulation to lose nothing). Lateness is judged on the host: a client whose
model is ready more than ``--deadline`` seconds after the host received the global model is late (trained,
recorded, left out of the sum): the host's clock, not the aggregator's, because clocks of different nodes are not
comparable. The aggregator adds the reports' sums and weights and takes one server step, so the global model
equals per-client streaming up to float64 rounding.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from bench.strategies.fedavg.aggregate import StreamingMean
from kernels.tags import Tag, tag_for

REPORT_FIELDS = ("client", "host", "samples", "status", "train_s", "injected_s", "loss", "ready_s", "forward_s",
                 "backward_s")  # fmt: skip
HEAD, RECORDS, SUM = 1, 2, 3  # FED_CONTROL tag indices (0 is a client's header in per-client aggregation)


def report_tag(part: int, tag_ub: int) -> int:
    return tag_for(Tag.FED_CONTROL, part, tag_ub)


class Report:
    """One host's (or one subtree's) round: per-client records and the weighted partial sum."""

    def __init__(self, size: int):
        self.records: list[tuple] = []
        self.partial = StreamingMean(size)

    def send(self, comm: MPI.Comm, dest: int, tag_ub: int) -> list[MPI.Request]:
        head = np.array([len(self.records), self.partial.weight], dtype=np.float64)
        records = np.array(self.records, dtype=np.float64).reshape(-1, len(REPORT_FIELDS))
        self._keep = (head, records)  # alive until the sends complete
        self.nbytes = head.nbytes + records.nbytes + self.partial.total.nbytes  # what the three messages carry
        return [
            comm.Isend(head, dest, report_tag(HEAD, tag_ub)),
            comm.Isend(records, dest, report_tag(RECORDS, tag_ub)),
            comm.Isend(self.partial.total, dest, report_tag(SUM, tag_ub)),
        ]

    def receive_from(self, comm: MPI.Comm, source: int, tag_ub: int, scratch: np.ndarray) -> None:
        """Receive a report from ``source`` and fold it into this one (records appended, sums added)."""
        head = np.empty(2, dtype=np.float64)
        comm.Recv(head, source, report_tag(HEAD, tag_ub))
        records = np.empty((int(head[0]), len(REPORT_FIELDS)), dtype=np.float64)
        comm.Recv(records, source, report_tag(RECORDS, tag_ub))
        comm.Recv(scratch, source, report_tag(SUM, tag_ub))
        self.records += [tuple(r) for r in records]
        self.partial.merge(scratch, float(head[1]))


def tree_schedule(index: int, count: int) -> tuple[list[int], int | None]:
    """For the host at position ``index`` of the round's ``count`` hosts: the positions it receives from, in
    order, and the position it sends to (None: position 0, which sends to the aggregator). Binomial tree: in
    step d = 1, 2, 4, ... a position that is an odd multiple of d sends to the one d before it."""
    children, d = [], 1
    while d < count:
        if index % (2 * d) == d:
            return children, index - d
        if index % (2 * d) == 0 and index + d < count:
            children.append(index + d)
        d *= 2
    return children, None


def node_tree(rank: int, hosts: list[int], nodes: tuple[int, ...]) -> tuple[list[int], int | None]:
    """The round's tree with node leaders: for host ``rank`` among the round's ``hosts`` (ranks, ascending), the
    ranks it receives from, in order, and the rank it sends to (None: the aggregator). Inside each node a binomial
    tree (:func:`tree_schedule`) over its hosts leads to its first host; the nodes' first hosts then form a binomial
    tree in rank order, except that the leader on the aggregator's node (rank 0's) comes first and is the root, which
    reports to the aggregator. So a model crosses a node boundary once per node with hosts other than the
    aggregator's (the least any tree can: each such node must send at least once), where the tree over all hosts in
    rank order crosses at its first level wherever a node's hosts are an odd count. On one node (or ``nodes``
    unknown, empty) it is that tree."""
    if not nodes:
        nodes = (0,) * (max(hosts) + 1)
    mine = [h for h in hosts if nodes[h] == nodes[rank]]
    inside, up = tree_schedule(mine.index(rank), len(mine))
    children = [mine[c] for c in inside]
    if up is not None:
        return children, mine[up]
    leaders = sorted(
        {min(h for h in hosts if nodes[h] == nodes[g]) for g in hosts}, key=lambda h: (nodes[h] != nodes[0], h)
    )
    across, up = tree_schedule(leaders.index(rank), len(leaders))
    return children + [leaders[c] for c in across], None if up is None else leaders[up]

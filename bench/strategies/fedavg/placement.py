"""Which client rank trains which sampled client in a round.

``static`` (default): client k always trains on the rank that holds it in the topology's contiguous blocks.
``balanced``: every round, the sampled clients are spread over the client ranks longest first (LPT: clients in
decreasing n_k, each to the rank with the least work so far; ties by client id, then by rank), using n_k as the
cost of a client. Every rank holds the whole training set and computes the same assignment from the round's
sample and the partition sizes, so balancing costs no message. Training a client gives the same model on any
rank; only the order in which updates are folded changes (float64 sums: equal to rounding).
"""

from __future__ import annotations

import heapq


def balanced(sampled, sizes, ranks: list[int]) -> dict[int, int]:
    """client -> rank, longest processing time first."""
    load = [(0, r) for r in ranks]
    heapq.heapify(load)
    out = {}
    for k in sorted((int(k) for k in sampled), key=lambda k: (-int(sizes[k]), k)):
        work, rank = heapq.heappop(load)
        out[k] = rank
        heapq.heappush(load, (work + int(sizes[k]), rank))
    return out


def place(sampled, sizes, topology, how: str) -> dict[int, int]:
    """client -> rank training it this round."""
    if how == "balanced":
        return balanced(sampled, sizes, [r for r, c in sorted(topology.clients_of_rank.items()) if c])
    return {int(k): topology.host_of_client(int(k)) for k in sampled}

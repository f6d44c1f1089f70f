"""Which client rank trains which sampled client in a round.

``static``: client k always trains on the rank that holds it in the topology's contiguous blocks.
``balanced`` (default; measured faster at 3 and 8 ranks, bench/perf/BENCHMARKS.md): every round, the sampled
clients are spread over the client ranks longest first (LPT: clients in decreasing cost, each to the rank with the
least work so far; ties by client id, then by rank). Every rank holds
the whole training set and computes the same assignment from the round's sample and the partition sizes, so
balancing costs no message. Training a client gives the same model on any rank; only the order in which updates
are folded changes (float64 sums: equal to rounding).

A client's cost is its local optimizer steps plus its local samples in full batches (:func:`client_cost`): a step
has a fixed cost (kernel dispatch, optimizer) besides its per-sample work, and with FedAvg's small clients the fixed
part dominates. Measured on the benchmark's workload (cnn on digits, B = 32, one step per client): train time
= 1.54 ms + 0.104 ms x n_k (fit over 520 client records), so balancing by n_k alone put 9 clients on one host and
17 on the other in a round; by steps + samples / B both get 13.
"""

from __future__ import annotations

import heapq

from bench.strategies.fedavg.needs import client_placement


def client_cost(n: int, batch_size: int, local_epochs: int) -> float:
    """Local steps (E x full batches; a client smaller than B takes one batch of all its samples) + E n / B."""
    batch = max(1, min(batch_size, n))
    return local_epochs * (n // batch + n / batch_size)


def balanced(sampled, cost, ranks: list[int]) -> dict[int, int]:
    """client -> rank, longest processing time first (``cost``: client -> its cost)."""
    load = [(0.0, r) for r in ranks]  # pragma: no mutate (any equal start gives the same order)
    heapq.heapify(load)
    out = {}
    for k in sorted((int(k) for k in sampled), key=lambda k: (-cost[k], k)):
        work, rank = heapq.heappop(load)
        out[k] = rank
        heapq.heappush(load, (work + cost[k], rank))
    return out


def place(sampled, sizes, topology, cfg) -> dict[int, int]:
    """client -> rank training it this round (``--placement``, resolved: :func:`needs.client_placement`)."""
    if client_placement(cfg) == "balanced":
        cost = {int(k): client_cost(int(sizes[int(k)]), cfg.batch_size, cfg.local_epochs) for k in sampled}
        return balanced(sampled, cost, [r for r, c in sorted(topology.clients_of_rank.items()) if c])
    return {int(k): topology.host_of_client(int(k)) for k in sampled}

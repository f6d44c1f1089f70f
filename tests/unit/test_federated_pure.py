"""FedAvg's pure parts: aggregation against numpy, streaming against batch, sampling, server optimizers."""

import numpy as np
import pytest

from bench.strategies.fedavg.aggregate import ServerOptimizer, StreamingMean
from bench.strategies.fedavg.sampling import drops_out, sample_clients, speed_factor
from kernels.reference import weighted_mean
from tests.fl_config import fl_config, with_options


def updates(k=7, size=50, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((k, size)).astype(np.float32), rng.integers(1, 100, size=k).astype(float)


def test_streaming_mean_equals_numpy_weighted_mean_and_batch_reference():
    models, n = updates()
    agg = StreamingMean(models.shape[1])
    for m, w in zip(models, n):  # one at a time, as they arrive
        agg.add(m, w)
    expect = np.average(models.astype(np.float64), axis=0, weights=n)
    np.testing.assert_allclose(agg.mean(), expect, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(agg.mean(), weighted_mean(list(models), list(n)), rtol=1e-6, atol=1e-6)
    order = np.random.default_rng(1).permutation(len(n))  # arrival order does not matter
    again = StreamingMean(models.shape[1])
    for i in order:
        again.add(models[i], n[i])
    np.testing.assert_allclose(again.mean(), agg.mean(), rtol=1e-6, atol=1e-7)


def test_streaming_mean_memory_is_one_model():
    agg = StreamingMean(1000)
    for _ in range(300):
        agg.add(np.ones(1000, dtype=np.float32), 2.0)
    assert agg.total.nbytes == 8000 and agg.weight == 600.0


def test_empty_round_has_no_mean():
    with pytest.raises(ValueError):
        StreamingMean(3).mean()


def test_sampling_is_seeded_differs_across_rounds_and_has_the_right_size():
    a = [tuple(sample_clients(5, r, 256, 0.1)) for r in range(10)]
    b = [tuple(sample_clients(5, r, 256, 0.1)) for r in range(10)]
    assert a == b
    assert len(set(a)) == 10  # a different sample every round
    assert all(len(s) == 26 and len(set(s)) == 26 and max(s) < 256 for s in a)
    assert tuple(sample_clients(6, 0, 256, 0.1)) != a[0]
    assert list(sample_clients(0, 0, 5, 1.0)) == [0, 1, 2, 3, 4]
    assert len(sample_clients(0, 0, 5, 0.01)) == 1  # at least one client


def test_dropout_rate_and_speed_factors():
    drops = [drops_out(1, r, k, 0.3) for r in range(50) for k in range(40)]
    assert 0.25 < np.mean(drops) < 0.35
    assert not any(drops_out(1, r, 0, 0.0) for r in range(20))
    assert speed_factor(1, 3, 0.0) == 1.0
    f = [speed_factor(1, k, 0.5) for k in range(200)]
    assert min(f) >= 1.0 and max(f) > 1.5 and f == [speed_factor(1, k, 0.5) for k in range(200)]


def test_server_optimizers_closed_form():
    x, avg = np.zeros(3, dtype=np.float32), np.array([1.0, 2.0, -1.0], dtype=np.float32)
    ServerOptimizer("avg", 3).step(x, avg)
    np.testing.assert_array_equal(x, avg)
    x = np.zeros(3, dtype=np.float32)
    opt = ServerOptimizer("avgm", 3, lr=0.5, beta1=0.9)
    opt.step(x, avg)  # m = delta = avg; x = 0.5 avg
    np.testing.assert_allclose(x, 0.5 * avg)
    opt.step(x, avg)  # delta = 0.5 avg; m = 0.9 avg + 0.5 avg = 1.4 avg; x = 0.5 avg + 0.7 avg
    np.testing.assert_allclose(x, 1.2 * avg, rtol=1e-6)
    x = np.zeros(3, dtype=np.float32)
    adam = ServerOptimizer("adam", 3, lr=0.1, beta1=0.9, beta2=0.99, tau=1e-3)
    adam.step(x, avg)  # m = 0.1 d, v = 0.01 d^2 -> x = 0.1 * 0.1 d / (0.1 |d| + 1e-3)
    np.testing.assert_allclose(x, 0.01 * avg / (0.1 * np.abs(avg) + 1e-3), rtol=1e-5)


def test_algorithms_override_one_hook_each_and_compose():

    import torch

    from bench.strategies.fedavg.aggregate import StreamingMean
    from bench.strategies.fedavg.algorithm import FedAvg, FedOpt, FedProx
    from bench.strategies.fedavg.registry import algorithm_for

    cfg = fl_config(
        fedprox_mu=0.0, server_opt="avg", server_lr=0.5, server_momentum=0.9, seed=0, fl_algorithm="fedavg",
        aggregator="mean", selection="uniform",
    )  # fmt: skip
    assert type(algorithm_for(cfg, 3)) is FedAvg
    prox = algorithm_for(with_options(cfg, **{"fedprox_mu": 0.2}), 3)
    opt = algorithm_for(with_options(cfg, **{"server_opt": "avgm"}), 3)
    both = algorithm_for(with_options(cfg, **{"fedprox_mu": 0.2, "server_opt": "avgm"}), 3)
    assert (
        isinstance(prox, FedProx) and isinstance(opt, FedOpt) and isinstance(both, FedProx) and isinstance(both, FedOpt)
    )
    from bench.strategies.fedavg.drift import FedNova

    nova_prox = algorithm_for(with_options(cfg, **{"fedprox_mu": 0.2, "fl_algorithm": "fednova"}), 3)
    assert isinstance(nova_prox, FedNova) and isinstance(nova_prox, FedProx)  # FedNova's server, FedProx's clients
    model = torch.nn.Linear(2, 1, bias=False)
    anchor = prox.begin_client(model)
    with torch.no_grad():
        model.weight += 1.0  # moved by 1 in each of 2 coordinates: ||w - w0||^2 = 2
    loss = torch.tensor(3.0)
    assert float(prox.client_loss(loss, model, anchor)) == pytest.approx(3.0 + 0.5 * 0.2 * 2)
    assert float(FedAvg(cfg, 3).client_loss(loss, model, None)) == 3.0
    x, avg = np.zeros(3, dtype=np.float32), np.ones(3, dtype=np.float32)
    aggregate = StreamingMean(3)
    aggregate.add(avg, 2.0)
    FedAvg(cfg, 3).server_update(x, aggregate, 0)
    assert (x == 1).all()
    x2, ref = np.zeros(3, dtype=np.float32), np.zeros(3, dtype=np.float32)
    both.server_update(x2, aggregate, 0)
    ServerOptimizer("avgm", 3, lr=0.5, beta1=0.9).step(ref, avg)
    assert np.array_equal(x2, ref) and not np.array_equal(x2, avg)  # FedOpt's step, not the plain mean


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 13])
def test_tree_schedule_reaches_the_root_once_per_host_in_log_depth(count):
    from bench.strategies.fedavg.partials import tree_schedule

    parent = {}
    for i in range(count):
        children, up = tree_schedule(i, count)
        parent[i] = up
        assert all(tree_schedule(c, count)[1] == i for c in children)  # both ends agree on every edge
    assert [i for i, p in parent.items() if p is None] == [0]
    depth = max(len(list(_path(i, parent))) for i in range(count))
    assert depth <= max(1, (count - 1).bit_length() + 1)


def _path(i, parent):
    while i is not None:
        yield i
        i = parent[i]


def test_balanced_placement_is_longest_first_and_covers_every_client():
    from bench.strategies.fedavg.placement import balanced

    cost = {0: 9, 1: 1, 2: 5, 3: 5, 4: 2, 5: 8}
    out = balanced([0, 1, 2, 3, 4, 5], cost, [1, 2])
    assert set(out) == set(cost) and set(out.values()) <= {1, 2}
    loads = {r: sum(cost[k] for k, rr in out.items() if rr == r) for r in (1, 2)}
    assert loads == {1: 15, 2: 15}  # LPT: 9->1, 8->2, 5->2, 5->1, 2->... ties broken by rank
    assert balanced([3, 1], cost, [4]) == {3: 4, 1: 4}


def test_client_cost_counts_steps_and_samples():
    """The cost a balanced placement spreads: a client smaller than B takes one step of all its samples; one of
    3.5 batches takes 3 steps (the partial batch is dropped, as the client's training loop does)."""
    from bench.strategies.fedavg.placement import client_cost

    assert client_cost(5, 32, 1) == 1 + 5 / 32
    assert client_cost(112, 32, 2) == 2 * (3 + 112 / 32)
    assert client_cost(0, 32, 1) == 0


def test_balanced_placement_evens_out_small_clients_by_count():
    """Clients of 1 to 20 samples (B = 32) each take one step: balancing spreads them by count, not by samples
    (by samples alone, one rank got 16 one-sample clients beside another's single 20-sample one)."""
    from bench.strategies.fedavg.placement import balanced, client_cost

    sizes = {k: 1 for k in range(16)} | {16: 20}
    out = balanced(list(sizes), {k: client_cost(n, 32, 1) for k, n in sizes.items()}, [1, 2])
    counts = [sum(1 for r in out.values() if r == rank) for rank in (1, 2)]
    assert sorted(counts) == [8, 9]


def test_node_tree_by_hand_on_three_nodes_of_two():
    """Ranks 0-5 on nodes [0, 0, 1, 1, 2, 2], the aggregator rank 0, hosts 1-5. Inside nodes: 3 -> 2, 5 -> 4; the
    leaders 1, 2, 4 in a binomial tree: 2 -> 1 (d = 1), 4 -> 1 (d = 2); 1 reports to the aggregator. Two models
    cross nodes (2 -> 1, 4 -> 1); the tree over hosts in rank order crosses four times (2 -> 1, 4 -> 3, 3 -> 1,
    5 -> 1). Mutations caught: the leaders' children before the node's own, a leader taken as the last host."""
    from bench.strategies.fedavg.partials import node_tree

    nodes, hosts = (0, 0, 1, 1, 2, 2), [1, 2, 3, 4, 5]
    expected = {1: ([2, 4], None), 2: ([3], 1), 3: ([], 2), 4: ([5], 1), 5: ([], 4)}
    assert {h: node_tree(h, hosts, nodes) for h in hosts} == expected


@pytest.mark.parametrize("seed", range(6))
def test_node_tree_is_one_tree_crossing_once_per_node_and_the_flat_tree_on_one_node(seed):
    """Random layouts and round hosts: both ends agree on every edge, one root (the first host on the aggregator's
    node where it has one), every host reaches it, and a model crosses a node boundary, counting the root's report
    to rank 0, exactly once per node with hosts other than rank 0's: the least possible. On one node, or with no
    nodes known, it is tree_schedule's tree over the hosts in rank order. Mutation caught: leaders in plain rank
    order (the aggregator's node crossed twice on interleaved layouts)."""
    from bench.strategies.fedavg.partials import node_tree, tree_schedule

    gen = np.random.default_rng(seed)
    ranks = int(gen.integers(3, 14))
    nodes = tuple(int(n) for n in gen.integers(0, 4, ranks))  # nodes need not hold consecutive ranks
    hosts = sorted(int(h) for h in gen.choice(np.arange(1, ranks), size=int(gen.integers(1, ranks)), replace=False))
    parent = {}
    for h in hosts:
        children, up = node_tree(h, hosts, nodes)
        parent[h] = up
        assert all(node_tree(c, hosts, nodes)[1] == h for c in children)
    assert all(h in node_tree(p, hosts, nodes)[0] for h, p in parent.items() if p is not None)  # the other end
    on_aggregators_node = [h for h in hosts if nodes[h] == nodes[0]]
    root = (on_aggregators_node or hosts)[0]
    assert [h for h, p in parent.items() if p is None] == [root]
    assert all(list(_path(h, parent))[-1] == root for h in hosts)
    crossing = sum(nodes[h] != nodes[0 if p is None else p] for h, p in parent.items())  # the aggregator is rank 0
    assert crossing == len({nodes[h] for h in hosts} - {nodes[0]})
    for flat in ((0,) * ranks, ()):
        for i, h in enumerate(hosts):
            children, up = tree_schedule(i, len(hosts))
            assert node_tree(h, hosts, flat) == ([hosts[c] for c in children], None if up is None else hosts[up])

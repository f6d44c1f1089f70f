"""Pure parts of kernels/: rank arithmetic, tags, ring schedule (simulated in numpy), maths."""

import numpy as np
import pytest

from kernels import reference
from kernels.tags import Tag, tag_for
from kernels.topology import Topology, TopologyError, block_bounds


@pytest.mark.parametrize("n,parts", [(0, 1), (0, 3), (5, 8), (10, 3), (1000, 7), (7, 7)])
def test_block_bounds_cover_exactly(n, parts):
    bounds = [block_bounds(n, parts, i) for i in range(parts)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    for (_, hi), (lo2, _) in zip(bounds, bounds[1:]):
        assert hi == lo2
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1


def test_ring_neighbours_form_one_cycle():
    for size in (1, 2, 3, 5, 8):
        seen, r = [], 0
        for _ in range(size):
            seen.append(r)
            topo = Topology.ring(r, size)
            assert Topology.ring(topo.right, size).left == r
            r = topo.right
        assert sorted(seen) == list(range(size)) and r == 0


def test_parameter_server_roles_and_errors():
    topo = Topology.parameter_server(3, 5, 2)
    assert topo.role == "worker" and topo.servers == (0, 1) and topo.workers == (2, 3, 4)
    assert topo.ring_ranks == (2, 3, 4) and topo.left == 2 and topo.right == 4
    with pytest.raises(TopologyError, match="no worker"):
        Topology.parameter_server(0, 2, 2)
    with pytest.raises(TopologyError, match=">= 1"):
        Topology.parameter_server(0, 2, 0)


def test_federated_clients_each_hosted_once():
    size, k = 5, 23
    topo = Topology.federated(0, size, k)
    hosted = [c for r in range(1, size) for c in topo.clients_of_rank[r]]
    assert sorted(hosted) == list(range(k))
    assert all(topo.host_of_client(c) in range(1, size) for c in range(k))
    with pytest.raises(TopologyError, match="K >= size - 1"):
        Topology.federated(0, 8, 3)


def test_tags_distinct_per_kind_and_in_range():
    for index in (0, 1, 99, 5000, 10**6):
        tags = {tag_for(kind, index) for kind in Tag}
        assert len(tags) == len(Tag)
        assert all(0 <= t <= 32767 for t in tags)


def simulate_ring(buffers):
    """Run the ring schedule on a list of per-rank numpy buffers, sequentially: the oracle for the schedule."""
    p = len(buffers)
    bufs = [b.copy() for b in buffers]
    chunks = reference.ring_chunks(bufs[0].size, p)
    for step in range(p - 1):
        msgs = [bufs[i][slice(*chunks[reference.reduce_scatter_schedule(i, p, step)[0]])].copy() for i in range(p)]
        for i in range(p):
            recv_c = reference.reduce_scatter_schedule(i, p, step)[1]
            bufs[i][slice(*chunks[recv_c])] += msgs[(i - 1) % p]
    for step in range(p - 1):
        msgs = [bufs[i][slice(*chunks[reference.all_gather_schedule(i, p, step)[0]])].copy() for i in range(p)]
        for i in range(p):
            recv_c = reference.all_gather_schedule(i, p, step)[1]
            bufs[i][slice(*chunks[recv_c])] = msgs[(i - 1) % p]
    return bufs


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("n", [0, 1, 3, 8, 17, 100])
def test_ring_schedule_sums(p, n):
    rng = np.random.default_rng(p * 100 + n)
    bufs = [rng.integers(0, 10, n).astype(np.int64) for _ in range(p)]
    expect = np.sum(bufs, axis=0) if n else np.zeros(0)
    for out in simulate_ring(bufs):
        np.testing.assert_array_equal(out, expect)


def simulate_doubling(buffers):
    """Run doubling_plan's schedule sequentially on per-rank buffers (the oracle for the plan)."""
    from kernels.reference import doubling_plan

    p = len(buffers)
    bufs = [b.copy() for b in buffers]
    plans = [doubling_plan(i, p) for i in range(p)]
    for i, (_, _, role) in enumerate(plans):
        if role == "take":
            bufs[i] = bufs[i] + bufs[i - 1]
    rounds = max(len(pl[1]) for pl in plans)
    for k in range(rounds):
        new = [b.copy() for b in bufs]
        for i, (_, partners, role) in enumerate(plans):
            if role != "give":
                new[i] = bufs[i] + bufs[partners[k]]
        bufs = new
    for i, (_, _, role) in enumerate(plans):
        if role == "give":
            bufs[i] = bufs[i + 1].copy()
    return bufs


@pytest.mark.parametrize("p", range(1, 10))
def test_recursive_doubling_plan_sums_for_any_p(p):
    from kernels.reference import doubling_plan

    rng = np.random.default_rng(p)
    bufs = [rng.integers(0, 10, 5) for _ in range(p)]
    for out in simulate_doubling(bufs):
        np.testing.assert_array_equal(out, np.sum(bufs, axis=0))
    for i in range(p):  # partners are mutual
        _, partners, _ = doubling_plan(i, p)
        for k, j in enumerate(partners):
            assert doubling_plan(j, p)[1][k] == i


def test_ring_elements_sent_is_2_p_minus_1_over_p():
    for p in (2, 3, 4, 7):
        n = 7 * 1000
        total = sum(reference.ring_elements_sent(n, p, i) for i in range(p))
        assert total == 2 * (p - 1) * n  # all ranks together send 2 (p-1) n elements
    assert reference.ring_elements_sent(10, 1, 0) == 0


def test_weighted_mean_matches_numpy_average():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(6) for _ in range(4)]
    weights = [3, 1, 0, 6]
    np.testing.assert_allclose(reference.weighted_mean(arrays, weights), np.average(arrays, axis=0, weights=weights))
    with pytest.raises(ValueError):
        reference.weighted_mean(arrays, [0, 0, 0, 0])


def test_bus_bandwidth_definition():
    algbw, busbw = reference.ring_bus_bandwidth(1e6, 1e-3, 4)
    assert algbw == pytest.approx(1e9) and busbw == pytest.approx(1.5e9)


@pytest.mark.parametrize("p", [2, 4, 8, 16])
@pytest.mark.parametrize("n", [1, 7, 64, 1001])
def test_halving_plan_partners_agree_and_segments_tile(p, n):
    from kernels.halving_doubling import halving_plan

    plans = [halving_plan(i, p, n) for i in range(p)]
    for i, plan in enumerate(plans):
        assert len(plan) == p.bit_length() - 1
        for step, (partner, keep, send) in enumerate(plan):
            other = plans[partner][step]
            assert other[0] == i and other[1] == send and other[2] == keep  # what one sends the other keeps
    finals = sorted(plan[-1][1] for plan in plans)  # after the reduce-scatter the kept pieces tile [0, n)
    assert finals[0][0] == 0 and finals[-1][1] == n and all(a[1] == b[0] for a, b in zip(finals, finals[1:]))


def test_halving_plan_needs_a_power_of_two():
    from kernels.halving_doubling import halving_plan

    with pytest.raises(ValueError, match="power-of-two"):
        halving_plan(0, 6, 10)


def test_block_bounds_by_hand_and_its_errors():
    """10 items over 4 blocks: sizes 3, 3, 2, 2 (the first n % parts get one more)."""
    assert [block_bounds(10, 4, i) for i in range(4)] == [(0, 3), (3, 6), (6, 8), (8, 10)]
    with pytest.raises(ValueError, match="^parts must be positive, got 0$"):
        block_bounds(10, 0, 0)
    with pytest.raises(ValueError, match="^block index 4 out of range for 4 parts$"):
        block_bounds(10, 4, 4)
    with pytest.raises(ValueError, match="^block index -1 out of range for 4 parts$"):
        block_bounds(10, 4, -1)


def test_virtual_nodes_are_blocks_of_consecutive_ranks():
    from kernels.topology import virtual_nodes

    assert virtual_nodes(5, 2) == (0, 0, 1, 1, 2)  # the last node smaller
    assert virtual_nodes(4, 4) == (0, 0, 0, 0) and virtual_nodes(3, 8) == (0, 0, 0)
    assert virtual_nodes(3, 1) == (0, 1, 2)
    with pytest.raises(TopologyError, match="--ranks-per-node must be >= 1"):
        virtual_nodes(4, 0)


def test_node_groups_keep_ring_order_and_first_appearance():
    from kernels.topology import node_groups

    nodes = (0, 0, 1, 1, 0)  # rank 4 back on node 0
    assert node_groups((1, 2, 3, 4), nodes) == ((1, 4), (2, 3))
    assert node_groups((3, 2, 1), nodes) == ((3, 2), (1,))  # node 1 first: its rank leads the ring
    assert node_groups((0, 1, 2), ()) == ((0, 1, 2),)  # no nodes known: one node


def test_chunk_owners_cover_every_chunk_once_per_node():
    """C chunks (the largest node's size); on a node of K ranks, local index c mod K owns chunk c: every chunk
    has exactly one owner per node and a node's ranks own C / K chunks each, to within one."""
    from kernels.topology import chunk_owner

    assert [chunk_owner(c, 4) for c in range(4)] == [0, 1, 2, 3]
    assert [chunk_owner(c, 3) for c in range(4)] == [0, 1, 2, 0]
    assert [chunk_owner(c, 1) for c in range(4)] == [0, 0, 0, 0]


def test_sub_ring_keeps_the_rank_and_the_nodes():
    topo = Topology.ring(2, 6)
    topo = Topology(topo.rank, topo.size, topo.role, topo.ring_ranks, nodes=(0, 0, 1, 1, 2, 2))
    sub = topo.sub_ring((0, 2, 4))
    assert (sub.ring_index, sub.left, sub.right, sub.nodes) == (1, 0, 4, topo.nodes)
    assert (sub.rank, sub.size, sub.role) == (topo.rank, topo.size, topo.role)
    assert topo.node_groups == ((0, 1), (2, 3), (4, 5)) and topo.describe()["nodes"] == [0, 0, 1, 1, 2, 2]


def test_two_level_model_of_the_topology_benchmark_by_hand():
    """Inter-node ms of one all-reduce, worked by hand for 2 nodes of 4 ranks, 50 us and 1 Gb/s (125e6 B/s):
    4 MiB flat ring: 14 steps of (50 us + 4 MiB / 8 / 125e6 B/s) = 14 x 4.244304 ms; hierarchical: 2 steps of
    (50 us + 4 MiB / 2 / 125e6) = 2 x 16.827216 ms; 8 B: one doubling round across, flat with 4 senders on the link
    (50 us + 32 B / 125e6), hierarchical the first ranks' (50 us + 8 B / 125e6); one node: nothing crosses."""
    from bench.perf.topology import model_seconds

    n, L, B = 4 << 20, 50e-6, 125e6
    assert model_seconds("flat", n, 2, 4, L, B) == pytest.approx(14 * 4.244304e-3)
    assert model_seconds("hierarchical", n, 2, 4, L, B) == pytest.approx(2 * 16.827216e-3)
    assert model_seconds("flat", 8, 2, 4, L, B) == pytest.approx(50e-6 + 32 / B)
    assert model_seconds("hierarchical", 8, 2, 4, L, B) == pytest.approx(50e-6 + 8 / B)
    assert model_seconds("flat", n, 1, 8, L, B) == 0.0

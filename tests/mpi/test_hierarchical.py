"""Hierarchical all-reduce == MPI's own Allreduce under every node layout: 1-4 ranks per node (the last node
smaller where the rank count does not divide), nodes that interleave (rank mod 2), one node, one rank per node;
integer-valued data (exact in any summation order) compared bit for bit, real-valued data to float32 rounding;
and the bytes each rank sends inside and across nodes against the closed forms in kernels/hierarchical.py."""

import numpy as np
import pytest
from mpi4py import MPI

from kernels.hierarchical import HierarchicalAllreduce
from kernels.topology import Topology, virtual_nodes

from .conftest import all_agree

SIZES = [0, 1, 2, 3, 5, 7, 64, 1000, 12345, 40000]
PATHS = {"hybrid": None, "large": 0, "small": 1 << 40}  # small_bytes: by size, always three stages, always leaders


def layouts(size: int) -> dict[str, tuple[int, ...]]:
    found = {f"{k} per node": virtual_nodes(size, k) for k in (1, 2, 3, 4)}
    found["interleaved"] = tuple(r % 2 for r in range(size))
    found["one node"] = ()
    return found


def kernel(comm, nodes, path):
    topo = Topology.ring(comm.rank, comm.size)
    topo = Topology(topo.rank, topo.size, topo.role, topo.ring_ranks, nodes=nodes)
    small = PATHS[path]
    return HierarchicalAllreduce(comm, topo) if small is None else HierarchicalAllreduce(comm, topo, small)


def sizes_differing_from_mpi(comm, reduce, sizes, dtype=np.float32) -> list[int]:
    """The sizes at which ``reduce`` (in place, returning its buffer) differs from MPI_Allreduce on integer-valued
    data (float sums of it are exact in any order, so any difference is a wrong sum)."""
    wrong = []
    for n in sizes:
        buf = np.random.default_rng([n, comm.rank]).integers(-50, 50, n).astype(dtype)
        expect = np.empty_like(buf)
        comm.Allreduce(buf, expect, op=MPI.SUM)
        if not (reduce(buf, key=n) is buf and np.array_equal(buf, expect)):
            wrong.append(n)
    return wrong


@pytest.mark.mpi
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_hierarchical_equals_mpi_under_every_layout(path, dtype):
    comm = MPI.COMM_WORLD
    failed = [(name, n) for name, nodes in layouts(comm.size).items()
              for n in sizes_differing_from_mpi(comm, kernel(comm, nodes, path), SIZES, dtype)]  # fmt: skip
    assert all_agree(not failed), f"rank {comm.rank}: differs from MPI_Allreduce at {failed[:5]}"


@pytest.mark.mpi
def test_hierarchical_real_values_agree_to_rounding():
    comm = MPI.COMM_WORLD
    ok = True
    for nodes in layouts(comm.size).values():
        buf = np.random.default_rng(comm.rank).standard_normal(40000).astype(np.float32)
        expect = np.empty_like(buf)
        comm.Allreduce(buf, expect, op=MPI.SUM)
        kernel(comm, nodes, "hybrid")(buf)
        ok &= np.allclose(buf, expect, rtol=1e-5, atol=1e-5 * comm.size)
    assert all_agree(ok)


@pytest.mark.mpi
def test_bytes_inside_and_across_nodes_follow_the_closed_forms():
    """Equal nodes of K ranks, N nodes, n divisible by everything: inside a node a rank sends 2 (K - 1) n / K
    elements (reduce-scatter and all-gather of n / K each step), across nodes 2 (N - 1) n / (N K) (its chunk's
    ring); the leaders' small path sends (K - 1) n inside (n from each other rank) and the leaders' doubling."""
    comm = MPI.COMM_WORLD
    ok = True
    for K in (1, 2, 4):
        if comm.size % K:
            continue
        N, n = comm.size // K, 2 * 3 * 4 * 5 * 7 * 64
        reduce = kernel(comm, virtual_nodes(comm.size, K), "large")
        inside, across = reduce.elements_by_link(n)
        ok &= inside == 2 * (K - 1) * n // K and across == 2 * (N - 1) * n // (N * K)
        first = comm.rank % K == 0
        small = kernel(comm, virtual_nodes(comm.size, K), "small").elements_by_link(n)
        ok &= small[0] == ((K - 1) * n if first else n if K > 1 else 0)
        ok &= small[1] == 0 or first
    assert all_agree(ok)


@pytest.mark.mpi
@pytest.mark.parametrize("strategy", ["ring", "localsgd"])
def test_training_with_hierarchical_allreduce_is_the_flat_run_to_rounding(shared_tmp, strategy):
    """``--allreduce hierarchical`` (2 virtual ranks per node, the last node smaller at odd rank counts) trains
    the same model as the flat ring: equal to float32 rounding after 8 steps (the sums only change order)."""
    from .test_ring_training import make_cfg, trainer_for

    finals, ok = [], True
    for allreduce in ("flat", "hierarchical"):
        cfg = make_cfg(shared_tmp, strategy=strategy, steps=8, allreduce=allreduce, ranks_per_node=2, local_steps=2)
        trainer = trainer_for(cfg)
        ok &= isinstance(trainer.run.strategy.allreduce, HierarchicalAllreduce) == (allreduce == "hierarchical")
        trainer.train()
        finals.append([p.detach().numpy().copy() for p in trainer.run.model.parameters()])
    ok &= all(np.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(*finals))
    assert all_agree(ok)


@pytest.mark.mpi
def test_bytes_counted_across_nodes_are_the_kernels_own_accounting():
    """The strategy communicator counts what each rank sends to other nodes (``timing/comm_bytes_across``): for
    the hierarchical kernel it equals the kernel's own ``elements_by_link`` across nodes, and for the flat ring's
    ring path every byte when its right neighbour is on another node, none otherwise."""
    from bench.comm.emulated_link import emulated
    from kernels.ring_allreduce import RingAllreduce

    comm = MPI.COMM_WORLD
    ok = True
    for nodes in layouts(comm.size).values():
        counted = emulated(comm, "", nodes or (0,) * comm.size)
        topo = Topology.ring(comm.rank, comm.size)
        topo = Topology(topo.rank, topo.size, topo.role, topo.ring_ranks, nodes=nodes)
        hier = HierarchicalAllreduce(counted, topo)
        for n in (5, 40000, 300000):
            buf = np.ones(n, dtype=np.float32)
            hier(buf)
            ok &= counted.take_across() == hier.elements_by_link(n)[1] * 4
        flat = RingAllreduce(counted, topo, small_bytes=0)
        flat(np.ones(40000, dtype=np.float32))
        crossing = bool(nodes) and nodes[topo.right] != nodes[topo.rank]
        ok &= counted.take_across() == (flat.elements_sent(40000) * 4 if crossing else 0)
    assert all_agree(ok)


@pytest.mark.mpi
def test_time_counted_across_nodes_is_the_flat_rings_exchanges_with_other_nodes():
    """``timing/comm_across``'s source: the seconds a rank spends in calls that exchange with another node. Over an
    emulated link of 3 ms latency, a ring step whose send or receive crosses a node boundary lasts at least 3 ms
    (the crossing message is paced, and a receive waits for it), so a rank with a neighbour on another node counts
    at least 2 (p - 1) x 3 ms, and no more than the call took; a rank whose neighbours share its node counts
    nothing, and so does a run on one node. Mutations caught: timing the sends inside a node, timing only the
    send side (the receiving rank would count nothing), not counting the pacing."""
    import time

    from bench.comm.emulated_link import emulated
    from kernels.ring_allreduce import RingAllreduce

    comm = MPI.COMM_WORLD
    ok = True
    for nodes in layouts(comm.size).values():
        paced = emulated(comm, "3000,10" if nodes else "", nodes or (0,) * comm.size)
        topo = Topology.ring(comm.rank, comm.size)
        topo = Topology(topo.rank, topo.size, topo.role, topo.ring_ranks, nodes=nodes)
        flat = RingAllreduce(paced, topo, small_bytes=0)
        start = time.perf_counter()
        flat(np.ones(4000, dtype=np.float32))
        took = time.perf_counter() - start
        seconds = paced.take_across_seconds()
        paced.take_across()
        me = topo.rank
        crossing = bool(nodes) and (nodes[topo.right] != nodes[me] or nodes[topo.left] != nodes[me])
        if crossing:
            ok &= 2 * (comm.size - 1) * 3e-3 * 0.99 <= seconds <= took
        else:
            ok &= seconds == 0.0
    assert all_agree(ok)

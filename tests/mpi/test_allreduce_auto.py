"""``--allreduce auto``: per buffer the kernel the two-level model prices lower. Whatever it takes, the sum is MPI's
own Allreduce (bit for bit on integer data) under every node layout, every rank takes the same kernel for the same
buffer, and a training run with it is the flat run to float32 rounding, recording the links it measured."""

import numpy as np
import pytest
from mpi4py import MPI

from bench.comm.calibrate import measure_links
from kernels.chosen import ModelChosenAllreduce
from kernels.cost import Link
from kernels.hierarchical import HierarchicalAllreduce
from kernels.ring_allreduce import RingAllreduce
from kernels.topology import Topology

from .conftest import all_agree
from .test_hierarchical import SIZES, layouts, sizes_differing_from_mpi

LINKS = {  # (inside, across): a slow network, where large buffers go hierarchical; one link for both
    "slow network": (Link(1e-6, 1e-10), Link(1e-4, 1e-8)),
    "uniform": (Link(1e-6, 1e-10), Link(1e-6, 1e-10)),
}


@pytest.mark.mpi
@pytest.mark.parametrize("links", list(LINKS))
def test_chosen_kernel_equals_mpi_and_every_rank_chooses_alike(links):
    comm = MPI.COMM_WORLD
    ok, failed = True, []
    for name, nodes in layouts(comm.size).items():
        topo = Topology.ring(comm.rank, comm.size)
        reduce = ModelChosenAllreduce(comm, Topology(topo.rank, topo.size, topo.role, topo.ring_ranks, nodes=nodes),
                                      *LINKS[links], small_bytes=1024)  # fmt: skip
        wrong = sizes_differing_from_mpi(comm, reduce, [*SIZES, 300000])
        ok &= not wrong
        failed += [(name, n) for n in wrong]
        ok &= len(set(map(str, comm.allgather(sorted(reduce.choices.items()))))) == 1
    assert all_agree(ok), f"rank {comm.rank}: differs from MPI_Allreduce at {failed[:5]}"


@pytest.mark.mpi
def test_on_a_slow_network_large_buffers_go_hierarchical_and_small_ones_flat():
    """The decision on 2 nodes of 2 ranks, priced by hand (inside 1 us + 0.1 ns/B, across 100 us + 10 ns/B):
    8 MiB flat ring 6 (1e-4 + 2 MiB x 1e-8) = 0.1264 s against hierarchical 2 (1e-6 + 4 MiB x 1e-10) +
    2 (1e-4 + 4 MiB x 1e-8) = 0.0849 s; 8 B flat doubling (1e-4 + 2 x 8e-8) + (1e-6 + 8e-10) = 101.2 us against
    the leaders' path 2 (1e-6 + 8e-10) + (1e-4 + 8e-8) = 102.1 us."""
    comm = MPI.COMM_WORLD
    if comm.size != 4:
        pytest.skip("2 nodes of 2 ranks")
    topo = Topology.ring(comm.rank, comm.size)
    reduce = ModelChosenAllreduce(comm, Topology(topo.rank, topo.size, topo.role, topo.ring_ranks, nodes=(0, 0, 1, 1)),
                                  *LINKS["slow network"])  # fmt: skip
    ok = isinstance(reduce.kernel_for(8 << 20), HierarchicalAllreduce)
    ok &= isinstance(reduce.kernel_for(8), RingAllreduce)
    assert all_agree(ok), reduce.choices


@pytest.mark.mpi
def test_measured_links_are_physical_and_the_same_on_every_rank():
    comm = MPI.COMM_WORLD
    nodes = tuple(r // 2 for r in range(comm.size))
    groups = [tuple(r for r in range(comm.size) if nodes[r] == k) for k in sorted(set(nodes))]
    inside, across = measure_links(comm, groups)
    ok = all(x >= 0 for x in (inside.alpha, inside.beta, across.alpha, across.beta))
    ok &= (inside.alpha > 0) == (comm.size >= 2) and (across.alpha > 0) == (comm.size >= 3)
    ok &= len(set(comm.allgather((inside, across)))) == 1
    assert all_agree(ok), (inside, across)


@pytest.mark.mpi
def test_auto_with_a_compressed_ring_trains_as_the_flat_one(shared_tmp):
    """Compressed averaging all-gathers on the kernel's communicator: auto must offer it (a review found it did not)."""
    from .test_ring_training import make_cfg, trainer_for

    finals = []
    for allreduce in ("flat", "auto"):
        trainer = trainer_for(make_cfg(shared_tmp, steps=4, allreduce=allreduce, ranks_per_node=2, compress="fp16"))
        trainer.train()
        finals.append([p.detach().numpy().copy() for p in trainer.run.model.parameters()])
    assert all_agree(all(np.allclose(a, b, rtol=1e-3, atol=1e-5) for a, b in zip(*finals)))


@pytest.mark.mpi
def test_training_with_auto_is_the_flat_run_and_records_its_links(shared_tmp):
    from .test_ring_training import make_cfg, trainer_for

    finals, ok = [], True
    for allreduce in ("flat", "auto"):
        cfg = make_cfg(shared_tmp, steps=6, allreduce=allreduce, ranks_per_node=2, emulate_link="50,1")
        trainer = trainer_for(cfg)
        ok &= isinstance(trainer.run.strategy.allreduce, ModelChosenAllreduce) == (allreduce == "auto")
        trainer.train()
        finals.append([p.detach().numpy().copy() for p in trainer.run.model.parameters()])
    ok &= all(np.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(*finals))
    info = trainer.run.strategy.describe()
    ok &= set(info["allreduce_links"]) == {"inside", "across"}
    ok &= info["allreduce_chosen"] and set(info["allreduce_chosen"]) <= {"flat", "hierarchical"}
    if MPI.COMM_WORLD.size >= 3:  # two nodes: the emulated link's 50 us is measured across (at least, never under)
        ok &= info["allreduce_links"]["across"][0] >= 40e-6
    assert all_agree(ok), info


@pytest.mark.mpi
def test_ranks_of_a_node_sending_at_once_share_the_emulated_wire():
    """2 nodes of 2 over an emulated 200 us, 1 Gb/s link (8 ns per byte on the wire): the across link's shared part,
    from 2 senders against 1 (bursts of 1 MiB), is the wire's (half of it at least: on 2 busy cores the senders may
    leave the barrier apart), and never more than the link's whole time per byte."""
    from bench.comm.emulated_link import emulated

    comm = MPI.COMM_WORLD
    if comm.size != 4:
        pytest.skip("2 nodes of 2 ranks")
    nodes = (0, 0, 1, 1)
    _, across = measure_links(emulated(comm.Dup(), "200,1", nodes), [(0, 1), (2, 3)])
    ok = across.shared_beta is not None and 4e-9 <= across.shared_beta <= across.beta
    ok &= 7.5e-9 <= across.beta and 190e-6 <= across.alpha  # paced: 8 ns/B, 200 us (less fit noise)
    assert all_agree(ok), across


@pytest.mark.mpi
def test_the_summary_says_what_auto_took_and_measured(shared_tmp):
    from .commands import train_in_job

    comm = MPI.COMM_WORLD
    if comm.size < 2:
        pytest.skip("a link to measure")
    args = ["--model", "mlp", "--steps", "2", "--eval-every", "0", "--bucket-mb", "0", "--ranks-per-node", "2"]
    ran = train_in_job(*args, "--allreduce", "auto", "--out", f"{shared_tmp}/a.h5")
    codes, errs = ran.everyone()
    ok = codes == [0] * comm.size
    if comm.rank == 0:
        line = next((x for x in ran.out.splitlines() if x.startswith("  allreduce auto")), "")
        ok &= " of 3 buckets (links measured at set-up: inside a node " in line and "across nodes" in line
    assert all_agree(ok), (codes, errs, ran.out if comm.rank == 0 else "")

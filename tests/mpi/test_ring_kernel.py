"""Ring and naive all-reduce == MPI's own Allreduce, for many sizes, dtypes and both COMM_SELF / COMM_WORLD."""

import numpy as np
import pytest
from mpi4py import MPI

from kernels.recursive_doubling import RecursiveDoublingAllreduce
from kernels.ring_allreduce import NaiveAllreduce, RingAllreduce
from kernels.topology import Topology

from .conftest import all_agree

SIZES = [0, 1, 2, 3, 4, 5, 7, 64, 1000, 12345, 40000]
DTYPES = [np.float32, np.float64, np.int32, np.int64]


def ring_only(comm, topo):
    return RingAllreduce(comm, topo, small_bytes=0)


KERNELS = [RingAllreduce, ring_only, RecursiveDoublingAllreduce, NaiveAllreduce]


@pytest.mark.mpi
@pytest.mark.parametrize("comm", [MPI.COMM_SELF, MPI.COMM_WORLD], ids=["self", "world"])
@pytest.mark.parametrize("kernel", KERNELS, ids=["hybrid", "ring-only", "doubling", "naive"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_allreduce_equals_mpi(comm, kernel, dtype):
    topo = Topology.ring(comm.rank, comm.size)
    reduce = kernel(comm, topo)
    ok = True
    for n in SIZES:
        rng = np.random.default_rng([n, comm.rank])
        buf = (rng.integers(-50, 50, n)).astype(dtype)  # integer values: float sums are exact in any order
        expect = np.empty_like(buf)
        comm.Allreduce(buf, expect, op=MPI.SUM)
        out = reduce(buf, key=n)
        ok &= out is buf and np.array_equal(buf, expect)
    assert all_agree(ok)


@pytest.mark.mpi
@pytest.mark.parametrize("kernel", KERNELS[:3], ids=["hybrid", "ring-only", "doubling"])
@pytest.mark.parametrize("n", [100, 10_001])
def test_float_sums_close_to_mpi_and_identical_across_ranks(kernel, n):
    comm = MPI.COMM_WORLD
    reduce = kernel(comm, Topology.ring(comm.rank, comm.size))
    buf = np.random.default_rng(comm.rank).standard_normal(n).astype(np.float32)
    expect = np.empty_like(buf)
    comm.Allreduce(buf, expect, op=MPI.SUM)
    reduce(buf)
    close = np.allclose(buf, expect, rtol=1e-5, atol=1e-5)
    same = comm.allgather(buf.tobytes())
    assert all_agree(close and all(s == same[0] for s in same))


@pytest.mark.mpi
def test_rejects_non_contiguous():
    comm = MPI.COMM_WORLD
    reduce = RingAllreduce(comm, Topology.ring(comm.rank, comm.size))
    with pytest.raises(TypeError):
        reduce(np.zeros((4, 4))[:, 0])


@pytest.mark.mpi
def test_elements_sent_matches_the_path_taken():
    comm = MPI.COMM_WORLD
    topo = Topology.ring(comm.rank, comm.size)
    hybrid = RingAllreduce(comm, topo, small_bytes=1024)
    small, large = 100, 10_000  # float32: 400 B -> doubling, 40000 B -> ring
    total_small = comm.allreduce(hybrid.elements_sent(small, 4))
    total_large = comm.allreduce(hybrid.elements_sent(large, 4))
    p = comm.size
    ok = total_large == 2 * (p - 1) * large  # ring: every rank sends 2 (p-1) n / p
    p2 = 1 << (p.bit_length() - 1)
    r = p - p2
    # doubling: p2 ranks x log2(p2) full buffers, plus 2 per folded pair
    ok &= total_small == (p2 * (p2.bit_length() - 1) + 2 * r) * small
    assert all_agree(ok)


@pytest.mark.mpi
@pytest.mark.parametrize("kernel", [RingAllreduce, ring_only], ids=["hybrid", "ring-only"])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_allreduce_of_tensor_buffers_equals_mpi(kernel, dtype):
    """--gpu-path device: the ring on tensors handed to MPI where they are (on CPU here, as a CUDA-aware MPI gets
    device tensors), against MPI's Allreduce of the same values; the hybrid's small sizes take recursive doubling."""
    import torch

    from bench.comm.device_buffers import TensorBuffer

    comm = MPI.COMM_WORLD
    reduce = kernel(comm, Topology.ring(comm.rank, comm.size))
    ok = True
    for n in SIZES:
        values = np.random.default_rng([n, comm.rank]).integers(-50, 50, n).astype(dtype)
        expect = np.empty_like(values)
        comm.Allreduce(values, expect, op=MPI.SUM)
        buf = TensorBuffer(torch.from_numpy(values.copy()))
        out = reduce(buf, key=n)
        ok &= out is buf and np.array_equal(buf.numpy(), expect)
    assert all_agree(ok)

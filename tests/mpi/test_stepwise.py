"""The step-wise all-reduce (kernels.stepwise) == MPI's Allreduce, and bit for bit the blocking kernels' result on
float data (same schedule, same additions), at every size class: empty, shorter than the ring, recursive doubling
below the threshold, ring above, and with several calls in flight at once."""

import numpy as np
import pytest
from mpi4py import MPI

from kernels.ring_allreduce import RingAllreduce
from kernels.stepwise import allreduce_steps
from kernels.topology import Topology

from .conftest import all_agree

SIZES = [0, 1, 3, 7, 1000, 40000, 100003]  # 40000+ float32: above the 128 KiB threshold (ring)


def drive(steps) -> None:
    for requests in steps:
        MPI.Request.Waitall(requests)


@pytest.mark.mpi
@pytest.mark.parametrize("small_bytes", [None, 0], ids=["hybrid", "ring-only"])
def test_stepwise_equals_mpi_and_the_blocking_kernel_bit_for_bit(small_bytes):
    comm = MPI.COMM_WORLD
    topo = Topology.ring(comm.rank, comm.size)
    kernel = RingAllreduce(comm, topo) if small_bytes is None else RingAllreduce(comm, topo, small_bytes=0)
    ok = True
    for n in SIZES:
        values = np.random.default_rng([n, comm.rank]).standard_normal(n).astype(np.float32)
        stepwise, blocking = values.copy(), values.copy()
        drive(allreduce_steps(kernel, stepwise, key=1))
        kernel(blocking, key=2)
        ints = np.round(values * 100).astype(np.int64)  # integer values: exact in any summation order
        expect = np.empty_like(ints)
        comm.Allreduce(ints, expect, op=MPI.SUM)
        drive(allreduce_steps(kernel, ints, key=3))
        ok &= np.array_equal(stepwise, blocking) and np.array_equal(ints, expect)
    assert all_agree(ok)


@pytest.mark.mpi
def test_calls_in_flight_together_do_not_mix():
    """Two buffers advanced together without blocking (test a step's requests, go on when they are done, as the
    hooks do), keyed apart: each gets its own sum. (Waiting on one call's step while a peer waits on the other's
    would deadlock at 3 ranks, where recursive doubling hands a buffer over and waits for it back.)"""
    comm = MPI.COMM_WORLD
    kernel = RingAllreduce(comm, Topology.ring(comm.rank, comm.size))
    a = np.full(50000, comm.rank + 1, dtype=np.int64)
    b = np.full(300, 10 * (comm.rank + 1), dtype=np.int64)
    in_flight = {4: [allreduce_steps(kernel, a, key=4), []], 5: [allreduce_steps(kernel, b, key=5), []]}
    while in_flight:
        for key, (steps, requests) in list(in_flight.items()):
            if requests and not MPI.Request.Testall(requests):
                continue
            following = next(steps, None)
            if following is None:
                del in_flight[key]
            else:
                in_flight[key][1] = following
    total = comm.size * (comm.size + 1) // 2
    assert all_agree(bool((a == total).all() and (b == 10 * total).all()))

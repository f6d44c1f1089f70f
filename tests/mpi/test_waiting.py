"""kernels.waiting against MPI's own calls: the yielding loops must return what Waitany and Probe would."""

import time

import numpy as np
import pytest
from mpi4py import MPI

from kernels.tags import Tag, tag_for
from kernels.waiting import probe, wait_any

from .conftest import all_agree

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(120)]
TAG = tag_for(Tag.TEST, 7)


def test_wait_any_returns_the_completed_request_and_undefined_when_all_are_null():
    comm = MPI.COMM_WORLD
    ok = wait_any([MPI.REQUEST_NULL, MPI.REQUEST_NULL]) == MPI.UNDEFINED
    if comm.size >= 2:
        if comm.rank == 0:  # requests from every other rank; each completes once its sender sends
            bufs = [np.zeros(1) for _ in range(comm.size)]
            reqs = [MPI.REQUEST_NULL] + [comm.Irecv(bufs[r], r, TAG) for r in range(1, comm.size)]
            status, seen = MPI.Status(), []
            for _ in range(comm.size - 1):
                k = wait_any(reqs, status)
                seen.append(k)
                ok &= status.Get_source() == k and bufs[k][0] == k and reqs[k] == MPI.REQUEST_NULL
            ok &= sorted(seen) == list(range(1, comm.size))
        else:
            time.sleep(0.01 * comm.rank)
            comm.Send(np.array([float(comm.rank)]), 0, TAG)
    assert all_agree(ok)


def test_probe_finds_any_source_and_gives_up_at_its_deadline():
    comm = MPI.COMM_WORLD
    status = MPI.Status()
    t = time.perf_counter()
    ok = probe(comm, MPI.ANY_SOURCE, TAG + 1, status, deadline=t + 0.05) is False  # nobody sends this tag
    ok &= 0.05 <= time.perf_counter() - t < 5
    comm.Barrier()
    if comm.size >= 2:
        if comm.rank == 1:
            comm.Send(np.array([1.5]), 0, TAG)
        elif comm.rank == 0:
            ok &= probe(comm, MPI.ANY_SOURCE, TAG, status) is True and status.Get_source() == 1
            got = np.zeros(1)
            comm.Recv(got, status.Get_source(), TAG)
            ok &= got[0] == 1.5
    assert all_agree(ok)

"""Fixtures for tests that run under mpiexec (pytest-mpi); see tests/run_mpi.py."""

import os
import tempfile

import pytest
from mpi4py import MPI


@pytest.fixture
def shared_tmp():
    """One temporary folder, created by rank 0 and known to every rank."""
    comm = MPI.COMM_WORLD
    path = tempfile.mkdtemp(prefix="syncbench-") if comm.rank == 0 else None
    path = comm.bcast(path, root=0)
    yield path
    comm.Barrier()
    if comm.rank == 0:
        for root, dirs, files in os.walk(path, topdown=False):
            for f in files:
                os.unlink(os.path.join(root, f))
            for d in dirs:
                os.rmdir(os.path.join(root, d))
        os.rmdir(path)


def all_agree(ok: bool) -> bool:
    """Logical AND over ranks, so a failure fails on every rank instead of hanging the others."""
    return MPI.COMM_WORLD.allreduce(bool(ok), op=MPI.LAND)

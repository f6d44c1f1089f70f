"""Per-rank entry for tests/run_mpi.py: rank 0 reports to the terminal, the others to log files."""

import os
import sys
from pathlib import Path

from mpi4py import MPI

root = Path(__file__).resolve().parent.parent
rank = MPI.COMM_WORLD.rank
if rank > 0:
    log = open(root / ".pytest-mpi" / f"rank-{rank}.log", "w")  # noqa: SIM115 - lives as long as the process
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
os.chdir(root)
import pytest  # noqa: E402

sys.exit(
    pytest.main(
        ["--with-mpi", "-p", "no:cacheprovider", "--timeout=240", "--timeout-method=thread", "tests/mpi", *sys.argv[1:]]
    )
)

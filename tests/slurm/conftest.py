"""Before the Slurm tests: remove MPICH shared-memory segments that no process maps any more.

MPICH names its /dev/shm segment after the PMI key-value space, which under srun derives from the Slurm job and
step ids; a job killed outright leaves its segment behind, and a local Slurm restarted later numbers its jobs from
1 again, so a new job can meet a stale segment of the same name and fail in MPI_Init ("Out of memory" in
MPIDI_POSIX_comm_bootstrap). We met exactly that here."""

from pathlib import Path

import pytest


def _mapped_paths() -> set[str]:
    used = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            used.update(line.split()[-1] for line in maps.read_text().splitlines() if "/dev/shm/" in line)
        except OSError:
            continue
    return used


@pytest.fixture(scope="session", autouse=True)
def stale_mpich_segments_removed():
    used = _mapped_paths()
    for seg in Path("/dev/shm").glob("mpich_shm_*"):
        if str(seg) not in used:
            seg.unlink(missing_ok=True)
    yield

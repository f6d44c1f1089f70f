"""Provenance for results files: what ran, where, with which software, and when."""

from __future__ import annotations

import datetime
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

from mpi4py import MPI

SLURM_VARS = (
    "SLURM_JOB_ID",
    "SLURM_JOB_NAME",
    "SLURM_JOB_NODELIST",
    "SLURM_NTASKS",
    "SLURM_CPUS_PER_TASK",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_SUBMIT_DIR",
)


def git_commit() -> str:
    """Commit of the syncbench checkout, with ``-dirty`` if it has local changes; ``unknown`` outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict:
    import h5py
    import mpi4py
    import numpy
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "mpi4py": mpi4py.__version__,
        "h5py": h5py.__version__,
        "syncbench": __import__("bench").__version__,
        "platform": platform.platform(),
    }


def mpi_library() -> str:
    return MPI.Get_library_version().strip().splitlines()[0].strip()


def collect(comm: MPI.Comm, threads: int | None = None) -> dict:
    """Collective: root attributes shared by every results file (hosts are gathered from all ranks);
    ``threads_per_rank`` only where torch computes (training, not microbenchmarks)."""
    hosts = comm.allgather(socket.gethostname())
    slurm = {k: os.environ.get(k, "") for k in SLURM_VARS}
    script = ""
    batch = os.environ.get("SYNCBENCH_BATCH_SCRIPT", "")
    if batch and Path(batch).is_file():
        script = Path(batch).read_text(errors="replace")
    info = {
        "world_size": comm.size,
        "git_commit": git_commit(),
        "mpi_library": mpi_library(),
        "versions": versions(),
        "hosts": hosts,
        "cores_per_host": os.cpu_count() or 0,
        "slurm_job_id": slurm["SLURM_JOB_ID"],
        "slurm": slurm,
        "batch_script": script,
        "command": " ".join([sys.executable, "-m", "bench", *sys.argv[1:]]),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if threads is not None:
        info["threads_per_rank"] = threads
    return info


def as_text(info: dict) -> str:
    return json.dumps(info, indent=2, sort_keys=True)

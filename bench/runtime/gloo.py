"""torch.distributed (gloo; NCCL for ``ddp`` on GPUs), wired up from MPI: the all-reduce users know from PyTorch.

Rendezvous is a TCP store on rank 0's host: rank 0 binds a free port, and MPI broadcasts host and port, so
nothing but the machines themselves is needed (no MASTER_ADDR, no network beyond the hosts' own). Used by
``python -m bench micro --impl gloo`` and ``--strategy ddp``.
"""

from __future__ import annotations

import socket

from mpi4py import MPI

from bench.runtime.errors import UsageError


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def init_gloo(comm: MPI.Comm, timeout_s: float = 120.0):
    """Initialise the default torch.distributed process group (gloo) over ``comm``'s ranks; returns the module."""
    return init_process_group(comm, timeout_s, "gloo")


def init_process_group(comm: MPI.Comm, timeout_s: float = 120.0, backend: str = "gloo"):
    """Initialise the default torch.distributed process group (``backend``: gloo or nccl) over ``comm``'s ranks;
    returns the module."""
    import datetime

    import torch.distributed as dist

    if not dist.is_available():
        raise UsageError(f"{backend}: this torch build has no torch.distributed")
    if dist.is_initialized():
        return dist
    addr = None
    if comm.rank == 0:
        host = socket.gethostname()
        try:
            socket.gethostbyname(host)
        except OSError:
            host = "127.0.0.1"
        addr = (host, _free_port())
    host, port = comm.bcast(addr, root=0)
    dist.init_process_group(
        backend,
        init_method=f"tcp://{host}:{port}",
        rank=comm.rank,
        world_size=comm.size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    return dist

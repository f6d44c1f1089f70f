"""Process-level concerns of an SPMD run: errors, signals, threads, the Slurm world-size guard.

Two kinds of failure, handled differently so that a job never hangs and never prints eight tracebacks:
- Set-up errors (bad options, missing files, unwritable output) happen where every rank can still agree:
  :func:`agree` runs the set-up on every rank, gathers what failed, and every rank raises the same
  :class:`UsageError` (printed once by rank 0) or exits quietly while the failing rank prints its traceback.
- After set-up, an exception on any rank is a bug or a lost peer: :func:`run_main` prints it once, naming the
  rank, and calls ``MPI_Abort`` so that mpiexec/srun end every rank. (A rank that merely exits would leave its
  peers blocked in a receive for ever: we measured that hang with MPICH's hydra.)
"""

from __future__ import annotations

import os
import sys
import traceback

from mpi4py import MPI

from bench.runtime.errors import UsageError
from bench.runtime.watchdog import abort_on_exception


class SetupFailed(Exception):
    """Another rank failed during set-up and has reported it; this rank exits with ``code``."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def agree(comm: MPI.Comm, fn, *args, **kwargs):
    """Run ``fn`` on every rank; if it fails anywhere, fail everywhere in the same way.

    Rule for ``fn``: it must not fail on some ranks *before* a collective that other ranks then enter (that
    collective and our ``allgather`` would never match). Put rank-local work that may fail (files, data) in one
    phase and collective wiring, whose checks fail alike on all ranks, in another.

    The lowest rank with a :class:`UsageError` decides the message; an unexpected exception on a rank is
    printed there with its traceback. Uses the pickled ``allgather`` once per set-up phase (never on a hot path).
    """
    result, report = None, None
    try:
        result = fn(*args, **kwargs)
    except UsageError as exc:
        report = ("usage", str(exc))
    except Exception:  # noqa: BLE001 - reported below, then every rank stops
        report = ("bug", traceback.format_exc())
    reports = comm.allgather(report)
    failed = [(r, rep) for r, rep in enumerate(reports) if rep is not None]
    if not failed:
        return result
    usage = [(r, rep[1]) for r, rep in failed if rep[0] == "usage"]
    if usage:
        raise UsageError(usage[0][1])
    if report is not None:
        sys.stderr.write(f"syncbench: rank {comm.rank} failed during set-up:\n{report[1]}")
        sys.stderr.flush()
    raise SetupFailed(1)


def run_main(main, argv: list[str]) -> int:
    """Call ``main(argv)`` and turn failures into one message and the right exit (see module docstring)."""
    comm = MPI.COMM_WORLD
    try:
        return main(argv) or 0
    except UsageError as exc:
        if comm.rank == 0:
            sys.stderr.write(f"syncbench: error: {exc}\n")
        return exc.exit_code
    except SetupFailed as exc:
        return exc.code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    except BaseException:  # noqa: BLE001 - any failure after set-up must end the whole job
        abort_on_exception(*sys.exc_info())
        return 1


def check_world_size(comm: MPI.Comm) -> None:
    """Under Slurm, a world of size 1 while ``SLURM_NTASKS`` > 1 means srun started each task without PMI
    (``--mpi=none``): N independent single-rank runs that would overwrite each other's results."""
    ntasks = os.environ.get("SLURM_NTASKS") or os.environ.get("SLURM_NPROCS")
    if comm.size == 1 and ntasks and ntasks.isdigit() and int(ntasks) > 1 and os.environ.get("SLURM_STEP_ID"):
        raise UsageError(
            f"MPI world has 1 rank but SLURM_NTASKS={ntasks}: srun started the tasks without MPI wire-up. "
            "Use 'srun --mpi=pmi2' (or mpiexec) so the ranks form one job."
        )


def node_local(comm: MPI.Comm) -> tuple[int, int]:
    """Collective: (this rank's index among the ranks on its node, ranks on its node), from COMM_TYPE_SHARED."""
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    where = (node.rank, node.size)
    node.Free()
    return where


def node_ids(comm: MPI.Comm) -> tuple[int, ...]:
    """Collective: the node of every rank (0, 1, ... in the order of each node's first rank), from
    COMM_TYPE_SHARED: ranks that share memory are on one node."""
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    first = node.bcast(comm.rank, root=0)  # the node's lowest world rank names it
    node.Free()
    names: dict[int, int] = {}
    return tuple(names.setdefault(f, len(names)) for f in comm.allgather(first))


def configure_threads(comm: MPI.Comm, requested: int) -> int:
    """torch threads per rank: ``requested`` if > 0, else cores on this node / ranks on this node (at least 1).
    Ranks on the node are counted with ``COMM_TYPE_SHARED``; cores with the process's CPU affinity."""
    import torch

    local_ranks = node_local(comm)[1]
    cores = usable_cores()
    threads = requested if requested > 0 else max(1, cores // local_ranks)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (e.g. a second run in one process, as in tests)
        pass
    return threads


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1

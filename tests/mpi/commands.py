"""``python -m bench train ARGV`` run inside this MPI job, on every rank, as the command runs it (the parse, then
:func:`bench.train.train`, under :func:`bench.runtime.launch.run_main`), with what each rank printed captured.

Why not a launch of its own: a launch costs about 3 s of CPU per rank here (torch and its compiler stack are
imported anew), which made the smoke tests most of the suite's time. What only a real launch shows (the processes'
exit code, one message for the whole job, signals, aborts) stays in tests/smoke."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

from mpi4py import MPI

from bench.cli import parse
from bench.runtime.launch import agree, run_main
from bench.runtime.watchdog import WATCHDOG


@dataclass
class Ran:
    """One rank's view of a command run in the job: its exit code and what it printed."""

    code: int
    out: str
    err: str

    def everyone(self) -> tuple[list[int], list[str]]:
        """Collective: every rank's exit code and standard error, in rank order."""
        comm = MPI.COMM_WORLD
        return comm.allgather(self.code), comm.allgather(self.err)


def _command(argv: list[str]) -> int:
    comm = MPI.COMM_WORLD
    args = agree(comm, parse, argv, comm.rank)
    if args.command == "micro":
        from bench.micro.harness import micro

        return micro(args, comm)
    from bench.train import train

    return train(args.cfg, comm)


def command_in_job(*argv: str) -> Ran:
    """Collective: ``bench ARGV`` (train or micro) on every rank of this job. Signals and the launch stay the
    test's."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run_main(_command, list(argv))
    finally:
        WATCHDOG.disarm()  # a failed set-up leaves it armed; the process that would have exited runs on
    return Ran(code, out.getvalue(), err.getvalue())


def train_in_job(*argv: str) -> Ran:
    """Collective: ``bench train ARGV`` on every rank of this job."""
    return command_in_job("train", *argv)

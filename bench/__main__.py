"""``python -m bench train|micro|overhead|info`` (run under mpiexec or srun; see README.md), and
``python -m bench sweep SPEC.toml`` (run without mpiexec: it launches them).

mpiexec -n 8 python -m bench train --strategy ring --model cnn --dataset digits --steps 100
mpiexec -n 4 python -m bench micro --op allreduce --max 4194304
python -m bench overhead --model resnet20
mpiexec -n 2 python -m bench info
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and sys.argv[1:2] == ["sweep"]:  # a launcher of MPI jobs, not one: no MPI here
    from bench.sweep import main as sweep

    sys.exit(sweep(sys.argv[2:]))

from bench.runtime.signals import STOP, block_early  # noqa: E402

block_early()  # before MPI and torch start threads: see bench/signals.py

from mpi4py import MPI  # noqa: E402

from bench.runtime.watchdog import abort_on_exception  # noqa: E402

sys.excepthook = abort_on_exception  # any uncaught exception, import-time too, ends the job

from bench.runtime.launch import run_main  # noqa: E402


def main(argv: list[str]) -> int:
    comm = MPI.COMM_WORLD
    from bench.cli import parse
    from bench.runtime.launch import agree

    args = agree(comm, parse, argv, comm.rank)  # a signal meanwhile stays pending (blocked) until STOP.start()
    if args.command == "train":
        from bench.train import train

        # A stop signal from now on (Slurm's time-limit warning may come while a slow node still imports or loads
        # data) is kept, and the loop stops at its first agreed step: the job ends cleanly with a results file.
        STOP.accept(grace_s=args.cfg.timeout or 300.0)
        STOP.start()

        return train(args.cfg, comm)
    STOP.start()
    if args.command == "info":
        from bench.info import info

        return info(comm, args)
    if args.command == "micro":
        from bench.micro.harness import micro

        return micro(args, comm)
    if args.command == "overhead":
        from bench.micro.overhead import overhead

        return overhead(args, comm)
    return 2


if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:]))

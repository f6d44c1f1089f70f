"""Why ``bench micro`` times every implementation on one shared buffer: the same MPI ``Allreduce``, three times per
iteration (order rotated every iteration), on three separately allocated buffers and then on one shared buffer.

    mpiexec -n 2 python -m bench.perf.harness_bias [--mib 4,16] [--iters 60]

If the three medians of the separate buffers differ while the shared buffer's three positions agree, the buffer
(how its memory was obtained and backed: glibc heap or a fresh mapping, transparent huge pages), not the order,
biases a comparison that gives each implementation its own buffer. Measured here (3 runs, 2 ranks, 16 MiB): the
first-allocated buffer 3.25-3.61 ms, the other two 2.41-2.55 ms; one buffer 2.86-3.18 ms in every position. The
effect depends on the allocation history (a variant allocating its arrays differently showed none), which is why
``micro`` does not try to control it but removes it. Prints on rank 0; nothing is a test of speed.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from mpi4py import MPI

from bench.micro.harness import time_ops


def medians(comm, bufs: list[np.ndarray], base: np.ndarray, iters: int) -> list[float]:
    """Median (ms, slowest rank per iteration) of an in-place Allreduce on each of ``bufs``, timed by ``micro``'s
    own harness (interleaved, order rotated, each buffer reset before its call)."""
    ops = {k: (lambda b=b: comm.Allreduce(MPI.IN_PLACE, b, op=MPI.SUM)) for k, b in enumerate(bufs)}

    def reset(k):
        bufs[k][:] = base

    samples = time_ops(comm, ops, 3, iters, reset)
    return [float(np.median(samples[k])) * 1e3 for k in ops]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mib", default="4,16", help="sizes in MiB, comma-separated")
    p.add_argument("--iters", type=int, default=60)
    args = p.parse_args(argv)
    comm = MPI.COMM_WORLD
    if comm.rank == 0:
        print(f"# same Allreduce x3 per iteration, {comm.size} ranks, {args.iters} iterations, median ms")
        print(f"{'size':>8} {'separate buffers 1 / 2 / 3':>30} {'one buffer, positions 1 / 2 / 3':>34}")
    for mib in (float(m) for m in args.mib.split(",")):
        n = int(mib * (1 << 20)) // 4
        base = np.arange(n, dtype=np.float32) % 7
        bufs = [base.copy() for _ in range(3)]  # allocated one after the other, as micro once did per impl
        separate = medians(comm, bufs, base, args.iters)
        shared = medians(comm, [bufs[0]] * 3, base, args.iters)
        if comm.rank == 0:
            sep = " / ".join(f"{t:.2f}" for t in separate)
            sha = " / ".join(f"{t:.2f}" for t in shared)
            print(f"{mib:>5g} MiB {sep:>30} {sha:>34}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

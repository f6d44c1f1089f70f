"""Waiting for one of several messages without holding the core.

MPICH 5.0.2 (the embedded default MPI) spins in ``MPI_Waitany``, ``MPI_Waitsome`` and ``MPI_Probe(ANY_SOURCE)``
without yielding the processor, while ``MPI_Wait``, ``MPI_Waitall`` and ``MPI_Recv`` yield now and then (every
``MPIR_CVAR_POLLS_BEFORE_YIELD`` polls; MPICH's FAQ warns that busy polling hurts oversubscribed nodes). With more
ranks than cores, a rank spinning in one of the former keeps its core until the scheduler preempts it, and the
peers it is waiting for cannot run. Measured here (rank 0 sends 8 B to every other rank and takes the replies in
arrival order, median per round; ``micro --op fedavg-round`` is this pattern): 8 ranks on 2 cores, ``Probe`` 12.9 ms,
``Waitany`` 12.6 ms, ``Waitsome`` 12.9 ms, the loops below 0.15-0.17 ms, ``Waitall`` 0.11 ms, MPI's ``Bcast`` +
``Reduce`` 0.13-0.19 ms; at 2 ranks (a core each) 5.3 us for the loop against 4.7 us for ``Waitany``.

So the event-driven servers and the FedAvg aggregator wait through these loops: test, then ``sched_yield``. On a
core of its own the rank gets the core straight back, so the loop costs a microsecond or two of latency there.

A yielding rank is still runnable, though, and the scheduler keeps giving it its share of a core: with more ranks
than cores, a FedAvg host waiting tens of milliseconds for the next round's model took CPU from the host still
training. So after ``SPIN_S`` of yielding, a wait sleeps, in steps growing from ``FIRST_SLEEP_S`` to
``MAX_SLEEP_S``: a wait that ends within the spin costs what it did; a long wait costs at most ``MAX_SLEEP_S`` of
extra latency and leaves the core to ranks with work (measured in bench/perf/BENCHMARKS.md, FedAvg rounds).
``SYNCBENCH_WAIT=yield`` restores the pure yield loop (for side-by-side measurements).
"""

from __future__ import annotations

import os
import time

from mpi4py import MPI

SPIN_S, FIRST_SLEEP_S, MAX_SLEEP_S = 100e-6, 20e-6, 1e-3
BACKOFF = os.environ.get("SYNCBENCH_WAIT", "backoff") != "yield"


class _Pause:
    """Yield the core for the first SPIN_S of a wait, then sleep with a doubling step (see the module docstring)."""

    def __init__(self):
        self.start = time.perf_counter()
        self.sleep = FIRST_SLEEP_S

    def __call__(self) -> None:
        if not BACKOFF or time.perf_counter() - self.start < SPIN_S:
            os.sched_yield()
            return
        time.sleep(self.sleep)
        self.sleep = min(2 * self.sleep, MAX_SLEEP_S)


def wait_any(requests: list[MPI.Request], status: MPI.Status | None = None) -> int:
    """As ``MPI.Request.Waitany``: the index of a completed request (``MPI.UNDEFINED`` if all are null)."""
    test, pause = MPI.Request.Testany, _Pause()
    while True:
        index, done = test(requests, status)
        if done:
            return index
        pause()


def probe(comm: MPI.Comm, source: int, tag: int, status: MPI.Status | None = None, deadline: float = 0.0) -> bool:
    """As ``comm.Probe``: wait until a message from ``source`` (may be ``MPI.ANY_SOURCE``) with ``tag`` can be
    received, its envelope in ``status``. With a ``deadline`` (``time.perf_counter`` seconds) give up then and
    return False."""
    iprobe, pause, clock = comm.Iprobe, _Pause(), time.perf_counter
    while not iprobe(source, tag, status):
        if deadline and clock() > deadline:
            return False
        pause()
    return True

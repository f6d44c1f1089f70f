"""The Recorder: rank-local arrays of measurements, gathered to rank 0 in increments.

Every measurement is a *series*: one row per step (or round) on every rank, e.g. ``timing/forward`` with rows
of one value per layer. Strategies add their own series (``ps/push``, ``fedavg/...``) through :meth:`add`;
the driver fills rows; :meth:`gather` moves the rows completed since the last call to rank 0 with the buffer
API (``Gather`` of contiguous float64/int64 blocks) and hands them, as (ranks, rows, ...) blocks, to the results
writer, which appends them to the file (:mod:`bench.measure.appender`). Rank 0 keeps no rows once written: its
memory for results is one flush's rows, however long the run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mpi4py import MPI


@dataclass
class Series:
    name: str
    units: str
    local: np.ndarray  # (steps, *inner) on every rank


class Recorder:
    def __init__(self, comm: MPI.Comm, steps: int, root: int = 0):
        self.comm = comm
        self.steps = steps
        self.root = root
        self.series: dict[str, Series] = {}
        self.gathered = 0  # rows [0, gathered) are on the root

    def add(self, name: str, units: str, inner: tuple[int, ...] = (), dtype=np.float64) -> np.ndarray:
        """Declare a series (the same on every rank, in the same order) and return its local array."""
        if name in self.series:
            raise ValueError(f"series {name} declared twice")
        local = np.zeros((self.steps, *inner), dtype=dtype)
        self.series[name] = Series(name, units, local)
        return local

    def ensure(self, rows: int) -> None:
        """Room for ``rows`` rows (decoupled strategies, whose ranks take different numbers of steps, grow their
        series as they go; rows a rank never reached stay zero, and its steps done are recorded beside them)."""
        if rows <= self.steps:
            return
        new = max(rows, 2 * self.steps)
        for s in self.series.values():
            grown = np.zeros((new, *s.local.shape[1:]), dtype=s.local.dtype)
            grown[: self.steps] = s.local
            s.local = grown
        self.steps = new

    def __getitem__(self, name: str) -> np.ndarray:
        return self.series[name].local

    def gather(self, done: int) -> dict[str, tuple[np.ndarray, str]]:
        """Collective: rows ``[gathered, done)`` of every series to the root, which gets them as name ->
        ((ranks, rows, ...) block, units) to write at row :attr:`gathered` (read it before calling); {} elsewhere."""
        lo, hi = self.gathered, done
        if hi <= lo:
            return {}
        blocks = {}
        for s in self.series.values():
            block = np.ascontiguousarray(s.local[lo:hi])
            recv = None
            if self.comm.rank == self.root:
                recv = np.empty((self.comm.size, *block.shape), dtype=block.dtype)
            self.comm.Gather(block, recv, root=self.root)
            if recv is not None:
                blocks[s.name] = (recv, s.units)
        self.gathered = hi
        return blocks

    def own_rows(self, lo: int, hi: int) -> dict[str, tuple[np.ndarray, str]]:
        """Without communication: rows ``[lo, hi)`` as (ranks, rows, ...) blocks holding this rank's own rows, zero
        for the others (the aggregator writing alone when client ranks stopped answering)."""
        out = {}
        for name, s in self.series.items():
            block = np.zeros((self.comm.size, hi - lo, *s.local.shape[1:]), dtype=s.local.dtype)
            block[self.comm.rank] = s.local[lo:hi]
            out[name] = (block, s.units)
        return out

"""The Recorder: rank-local arrays of measurements, gathered to rank 0 in increments.

Every measurement is a *series*: one row per step (or round) on every rank, e.g. ``timing/forward`` with rows
of one value per layer. Strategies add their own series (``ps/push``, ``fedavg/...``) through :meth:`add`;
the driver fills rows; :meth:`gather` moves the rows completed since the last call to rank 0 with the buffer
API (``Gather`` of contiguous float64/int64 blocks), where they are kept as (ranks, steps, ...) arrays for the
results writer. Gathering in increments is what lets a killed run leave a file with the steps it finished.
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
    full: np.ndarray | None = None  # (ranks, steps, *inner) on rank 0


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
        full = None
        if self.comm.rank == self.root:
            full = np.zeros((self.comm.size, self.steps, *inner), dtype=dtype)
        self.series[name] = Series(name, units, local, full)
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
            if s.full is not None:
                full = np.zeros((s.full.shape[0], new, *s.full.shape[2:]), dtype=s.full.dtype)
                full[:, : self.steps] = s.full
                s.full = full
        self.steps = new

    def __getitem__(self, name: str) -> np.ndarray:
        return self.series[name].local

    def gather(self, done: int) -> None:
        """Collective: bring rows ``[gathered, done)`` of every series to the root."""
        lo, hi = self.gathered, done
        if hi <= lo:
            return
        for s in self.series.values():
            block = np.ascontiguousarray(s.local[lo:hi])
            recv = None
            if self.comm.rank == self.root:
                recv = np.empty((self.comm.size, *block.shape), dtype=block.dtype)
            self.comm.Gather(block, recv, root=self.root)
            if recv is not None:
                s.full[:, lo:hi] = recv
        self.gathered = hi

    def datasets_with_root_rows(self, done: int) -> dict[str, tuple[np.ndarray, str]]:
        """On the root, without communication: rows ``[0, done)``, the others' as last gathered (zero beyond)."""
        out = {}
        for name, s in self.series.items():
            full = s.full[:, :done].copy()
            full[self.comm.rank, self.gathered : done] = s.local[self.gathered : done]
            out[name] = (full, s.units)
        return out

    def datasets(self) -> dict[str, tuple[np.ndarray, str]]:
        """On the root: name -> ((ranks, gathered, ...) array, units)."""
        return {name: (s.full[:, : self.gathered], s.units) for name, s in self.series.items()}

"""Rank-local row files for decoupled runs (``ps --ps-mode async``, ``ssp``), so that a run killed outright keeps
the steps its ranks reported.

The lock-step loop flushes by gathering every rank's rows to rank 0 (a collective). In a decoupled run the ranks
are at different steps and nothing collective may happen until the end, so instead every rank, every
``--flush-every`` of its own steps, appends its rows since its last flush to ``<out>.rank<R>.rows`` (an HDF5 file
of one rank written by the same appending writer, :mod:`bench.measure.appender`), and rank 0 then copies the rows
each rank added since it last looked into the results file (status ``running``, each rank's reported rows in
``timing/steps_done``). Neither side rewrites anything: a flush costs the rows since the last one. The end of the
run gathers every row through MPI, block by block, and every rank removes its row file.

The other ranks' rows reach rank 0 through the file system: on nodes that do not share ``--out``'s folder, the
running file holds rank 0's rows only (the others' ``steps_done`` stay 0). The final file does not depend on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.data import schema
from analysis.data.load import open_results
from bench.measure.appender import Appender
from bench.measure.recorder import Recorder


def path_for(out: str, rank: int) -> str:
    """Where rank ``rank`` keeps its rows (not ``*.h5``: the analysis never mistakes it for a result)."""
    return f"{out}.rank{rank}.rows"


def remove(out: str, rank: int) -> None:
    Path(path_for(out, rank)).unlink(missing_ok=True)


class RankRows:
    """One rank's row file: :meth:`append` adds the rows since the last call."""

    def __init__(self, out: str, rank: int, rows_per_flush: int):
        self.appender = Appender(path_for(out, rank), 1, "step", rows_per_flush)
        self.written = 0

    def append(self, rec: Recorder, done: int) -> None:
        blocks = {name: (s.local[None, self.written : done], s.units) for name, s in rec.series.items()}
        self.appender.write({"completed_steps": done}, blocks, self.written, {})
        self.written = done

    def close(self) -> None:
        self.appender.close()


class RowCollector:
    """Rank 0: copies into the results file the rows each rank added to its row file since the last look."""

    def __init__(self, out: str, size: int):
        self.out = out
        self.copied = np.zeros(size, dtype=np.int64)  # rows of each rank in the results file

    def collect(self, rec: Recorder, done: int, results: Appender) -> np.ndarray:
        """Rank 0's own rows up to ``done`` and every other rank's new ones into ``results``; returns the rows
        held per rank (``timing/steps_done`` of the running file)."""
        own = rec.comm.rank
        blocks = {name: (s.local[None, self.copied[own] : done], s.units) for name, s in rec.series.items()}
        results.write({}, blocks, int(self.copied[own]), {}, ranks=slice(own, own + 1))
        self.copied[own] = done
        for r in range(len(self.copied)):
            if r != own:
                self._copy(r, rec, results)
        return self.copied.copy()

    def _copy(self, rank: int, rec: Recorder, results: Appender) -> None:
        try:
            f = open_results(path_for(self.out, rank))
        except OSError:
            return  # not written yet, or not visible from this node
        with f:
            if "step" not in f:  # the row scale: rows in the file
                return
            # the rank's writer grows its datasets before it fills them, so a reader can see rows not yet written:
            # trust only the steps it declared complete (written after the rows, in the same flush)
            done = int(f.attrs.get("completed_steps", 0))
            lo, hi = int(self.copied[rank]), min(int(f["step"].shape[0]), done)
            stored = {name: schema.file_name(name) for name in rec.series}  # the row file's own names
            blocks = {
                name: (f[stored[name]][:, lo:hi], s.units)
                for name, s in rec.series.items()
                if stored[name] in f and f[stored[name]].shape[2:] == s.local.shape[1:]
            }
        if hi > lo:
            results.write({}, blocks, lo, {}, ranks=slice(rank, rank + 1))
            self.copied[rank] = hi

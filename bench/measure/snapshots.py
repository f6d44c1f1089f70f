"""Rank-local snapshots for decoupled runs (``ps --ps-mode async``, ``ssp``), so that a run killed outright keeps
the steps it finished.

The lock-step loop flushes by gathering every rank's rows to rank 0 (a collective). In a decoupled run the ranks
are at different steps and nothing collective may happen until the end, so instead every rank, every
``--flush-every`` of its own steps, writes its rows so far to ``<out>.rank<R>.npz`` (a temporary file renamed
over the old one: atomic, so a reader sees a whole snapshot), and rank 0 then rewrites the results file with
status ``running`` from its own rows and the other ranks' latest snapshots, each rank's step count in
``timing/steps_done``. The end of the run gathers everything as usual and every rank removes its snapshot.

The other ranks' rows reach rank 0 through the file system: on nodes that do not share ``--out``'s folder, the
running file holds rank 0's rows only (the others' ``steps_done`` stay 0). The final file does not depend on it.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from bench.measure.recorder import Recorder

DONE_KEY = "__steps_done__"


def path_for(out: str, rank: int) -> str:
    """Where rank ``rank`` keeps its snapshot (not ``*.h5``: the analysis never mistakes it for a result)."""
    return f"{out}.rank{rank}.npz"


def remove(out: str, rank: int) -> None:
    Path(path_for(out, rank)).unlink(missing_ok=True)


def write(out: str, rank: int, rec: Recorder, done: int) -> None:
    """This rank's rows ``[0, done)`` of every series, replacing its previous snapshot atomically."""
    arrays = {name: s.local[:done] for name, s in rec.series.items()}
    arrays[DONE_KEY] = np.array(done, dtype=np.int64)
    path = path_for(out, rank)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:  # a file object: np.savez would otherwise append ".npz" to the name
        np.savez(f, **arrays)
    os.replace(tmp, path)


def _read(out: str, rank: int) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path_for(out, rank)) as z:
            snap = {key: z[key] for key in z.files}
    except (OSError, ValueError, zipfile.BadZipFile):
        return None  # not written yet, or not visible from this node
    return snap if DONE_KEY in snap else None  # not a snapshot of ours


def assemble(out: str, size: int, rec: Recorder, done: int) -> tuple[dict[str, tuple[np.ndarray, str]], np.ndarray]:
    """On rank 0: (datasets as the results writer takes them, steps done per rank) from rank 0's live rows and
    every other rank's latest snapshot; rows a rank has not reported stay zero."""
    own = rec.comm.rank
    snaps = {r: snap for r in range(size) if r != own and (snap := _read(out, r)) is not None}
    steps_done = np.zeros(size, dtype=np.int64)
    steps_done[own] = done
    for r, snap in snaps.items():
        steps_done[r] = int(snap[DONE_KEY])
    rows = int(steps_done.max())
    datasets = {}
    for name, s in rec.series.items():
        full = np.zeros((size, rows, *s.local.shape[1:]), dtype=s.local.dtype)
        full[own, :done] = s.local[:done]
        for r, snap in snaps.items():
            theirs = snap.get(name)
            if theirs is not None and theirs.shape[1:] == s.local.shape[1:]:
                full[r, : len(theirs)] = theirs
        datasets[name] = (full, s.units)
    return datasets, steps_done

"""bench.snapshots: what rank 0 assembles from the other ranks' snapshot files (no MPI job needed: a recorder on
COMM_SELF plays rank 0 of a 3-rank run)."""

import numpy as np
from mpi4py import MPI

from bench.measure import snapshots
from bench.measure.recorder import Recorder


def recorder(rows: int, fill: float) -> Recorder:
    rec = Recorder(MPI.COMM_SELF, rows)
    rec.add("timing/forward", "s", (2,))
    rec.add("metrics/loss", "1")
    rec["timing/forward"][:] = fill
    rec["metrics/loss"][:] = fill
    return rec


def test_assemble_puts_each_ranks_latest_rows_in_place(tmp_path):
    out = str(tmp_path / "r.h5")
    snapshots.write(out, 1, recorder(10, 1.0), done=7)
    snapshots.write(out, 1, recorder(10, 1.5), done=9)  # the latest replaces the earlier one
    own = recorder(10, 5.0)
    datasets, steps_done = snapshots.assemble(out, 3, own, done=4)  # rank 2 has not reported yet
    assert steps_done.tolist() == [4, 9, 0]
    forward, units = datasets["timing/forward"]
    assert units == "s" and forward.shape == (3, 9, 2)
    assert (forward[0, :4] == 5.0).all() and (forward[0, 4:] == 0).all()
    assert (forward[1] == 1.5).all()
    assert (forward[2] == 0).all()
    assert datasets["metrics/loss"][0].shape == (3, 9)


def test_foreign_or_broken_files_are_not_snapshots(tmp_path):
    out = str(tmp_path / "r.h5")
    np.savez(snapshots.path_for(out, 1), **{"timing/forward": np.ones((99, 2))})  # no step count: not ours
    with open(snapshots.path_for(out, 2), "wb") as f:
        f.write(b"half a zip")
    datasets, steps_done = snapshots.assemble(out, 3, recorder(5, 2.0), done=5)
    assert steps_done.tolist() == [5, 0, 0]
    assert datasets["timing/forward"][0].shape == (3, 5, 2)
    snapshots.remove(out, 1)
    snapshots.remove(out, 1)  # removing twice (or a file never written) is fine
    assert not (tmp_path / "r.h5.rank1.npz").exists()

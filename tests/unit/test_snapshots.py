"""bench.measure.snapshots: the row files of decoupled runs and what rank 0 copies from them (no MPI job needed:
recorders on COMM_SELF play the ranks of a 3-rank run)."""

import numpy as np
from mpi4py import MPI

from analysis.data.load import load
from bench.measure import snapshots
from bench.measure.appender import Appender
from bench.measure.recorder import Recorder


def recorder(rows: int, fill: float) -> Recorder:
    rec = Recorder(MPI.COMM_SELF, rows)
    rec.add("timing/forward", "s", (2,))
    rec.add("metrics/loss", "1")
    rec["timing/forward"][:] = fill + np.arange(rows)[:, None]
    rec["metrics/loss"][:] = fill
    return rec


def test_rank_zero_copies_each_ranks_new_rows_in_place(tmp_path):
    out = str(tmp_path / "r.h5")
    rank1 = snapshots.RankRows(out, 1, rows_per_flush=3)
    theirs = recorder(10, 100.0)
    rank1.append(theirs, 4)
    rank1.close()  # another process in a real run: HDF5 lets one process open a file only one way at a time
    results = Appender(out, 3, "step", rows_per_flush=3)
    collector = snapshots.RowCollector(out, 3)
    own = recorder(10, 5.0)
    assert collector.collect(own, 2, results).tolist() == [2, 4, 0]  # rank 2 has not reported yet
    rank1.append(theirs, 9)  # only rows 4..8 are new
    rank1.close()
    assert collector.collect(own, 3, results).tolist() == [3, 9, 0]
    results.write({"status": "running", "world_size": 3, "strategy": "ssp", "config": {}}, {}, 0, {})
    results.close()
    forward = load(out).data["timing/forward"]
    assert forward.shape == (3, 9, 2)
    np.testing.assert_array_equal(forward[0, :3], own["timing/forward"][:3])
    assert (forward[0, 3:] == 0).all()
    np.testing.assert_array_equal(forward[1], theirs["timing/forward"][:9])
    assert (forward[2] == 0).all()


def test_missing_or_foreign_row_files_are_skipped(tmp_path):
    out = str(tmp_path / "r.h5")
    with open(snapshots.path_for(out, 2), "wb") as f:
        f.write(b"half a file")
    results = Appender(out, 3, "step", rows_per_flush=5)
    assert snapshots.RowCollector(out, 3).collect(recorder(5, 2.0), 5, results).tolist() == [5, 0, 0]
    results.close()
    snapshots.remove(out, 1)
    snapshots.remove(out, 1)  # removing twice (or a file never written) is fine
    snapshots.remove(out, 2)
    assert not (tmp_path / "r.h5.rank2.rows").exists()

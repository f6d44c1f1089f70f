"""Results as data (schema 3, issue 27): files written by the suite's writers open in xarray through h5netcdf with
named dimensions and no phony ones, ``.sel(step=k)`` selects the k-th step (numbered from 1), no dataset collides
with a dimension, and files of schemas 2 and 3 of the same run load alike. References: the arrays handed to the
writer, indexed by hand (row k - 1 is step k)."""

import warnings

import h5py
import numpy as np
import pytest

from analysis.data.load import load
from analysis.data.tree import to_xarray
from bench.measure import results
from bench.measure.appender import Appender

xr = pytest.importorskip("xarray")
pytest.importorskip("h5netcdf")

R, S, L = 2, 7, 3


def _ring_arrays(rng):
    return {
        "timing/step": (rng.random((R, S)), "s"),
        "timing/forward": (rng.random((R, S, L)), "s"),
        "metrics/loss": (rng.random((R, S)), "1"),
    }


def _ring_extras():
    return {
        "layers/name": (np.array(["conv", "fc1", "fc2"]), "1"),
        "metrics/eval_step": (np.array([3, 6], dtype=np.int64), "step"),  # as the bench keeps them: rows 3 and 6
        "metrics/test_accuracy": (np.array([0.5, 0.7]), "1"),
        "timing/steps_done": (np.full(R, S, dtype=np.int64), "steps"),
        "data/partition_sizes": (np.array([10, 11], dtype=np.int64), "samples"),
    }


def _appended(path, rows, extras, unit="step", ranks=R):
    app = Appender(str(path), ranks, unit, rows_per_flush=4)
    app.write({"status": "complete", "strategy": "ring", "config": {}, "world_size": ranks}, rows, 0, extras)
    app.close()


def _open_strictly(path):
    """xarray's own reader; a phony dimension (a dataset without scales) warns, and warnings fail the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return xr.open_datatree(str(path), engine="h5netcdf")


def _dims(tree) -> set[str]:
    return {d for node in tree.subtree for d in node.to_dataset(inherit=False).dims}


def test_an_appended_file_opens_in_xarray_with_named_dimensions(tmp_path):
    rows = _ring_arrays(np.random.default_rng(0))
    _appended(tmp_path / "r.h5", rows, _ring_extras())
    tree = _open_strictly(tmp_path / "r.h5")
    assert _dims(tree) == {"rank", "step", "layer", "evaluation", "partition"}
    assert tree["timing"]["forward"].dims == ("rank", "step", "layer")
    np.testing.assert_allclose(tree["timing"]["total"].sel(step=5), rows["timing/step"][0][:, 4], rtol=6e-8)
    assert tree["step"].values.tolist() == [1, 2, 3, 4, 5, 6, 7] and tree["rank"].values.tolist() == [0, 1]
    assert tree["metrics"]["eval_step"].values.tolist() == [4, 7]  # the 4th and 7th steps
    assert tree["layers"]["name"].dims == ("layer",) and tree["data"]["partition_sizes"].dims == ("partition",)
    via = to_xarray(tmp_path / "r.h5")
    np.testing.assert_allclose(via["timing"]["forward"].sel(step=2, rank=1), rows["timing/forward"][0][1, 1], 6e-8)


def test_client_and_update_logs_do_not_collide_with_dimensions(tmp_path):
    """fedavg/clients/{round,rank} and ps/updates/step were named like the round, rank and step dimensions: xarray
    could not open such files. Their numbers count from 1 in the file and in load()."""
    rounds = {"timing/step": (np.ones((3, 2)), "s")}
    log = {
        "fedavg/clients/round": (np.array([0, 0, 1, 1]), "round"),
        "fedavg/clients/rank": (np.array([1, 2, 1, 2]), "rank"),
        "fedavg/clients/client": (np.array([4, 0, 2, 5]), "1"),
    }
    _appended(tmp_path / "f.h5", rounds, log, unit="round", ranks=3)
    tree = _open_strictly(tmp_path / "f.h5")
    clients = tree["fedavg"]["clients"]
    assert clients["round_number"].values.tolist() == [1, 1, 2, 2] and clients["host_rank"].dims == ("participation",)
    assert tree["timing"]["total"].sel(round=2).values.tolist() == [1, 1, 1]
    assert load(tmp_path / "f.h5").data["fedavg/clients/round"].tolist() == [1, 1, 2, 2]
    updates = {"ps/updates/step": (np.array([0, 1, 2]), "step"), "ps/updates/worker": (np.array([1, 1, 2]), "rank")}
    _appended(tmp_path / "p.h5", {"timing/step": (np.ones((3, 3)), "s")}, updates, ranks=3)
    assert _open_strictly(tmp_path / "p.h5")["ps"]["updates"]["step_number"].values.tolist() == [1, 2, 3]
    assert load(tmp_path / "p.h5").data["ps/updates/step"].tolist() == [1, 2, 3]


def test_schema_2_and_3_files_of_one_run_load_alike(tmp_path):
    """The same arrays written as schema 2 (as given: 0-based, old names) and 3: load() and to_xarray() agree,
    numbering steps from 1 for both."""
    data = _ring_arrays(np.random.default_rng(1)) | _ring_extras()
    attrs = {"strategy": "ring", "config": {}, "world_size": R}
    results.write(str(tmp_path / "v2.h5"), attrs, data, schema=2)
    results.write(str(tmp_path / "v3.h5"), attrs, data)
    with h5py.File(tmp_path / "v2.h5") as f:
        assert "timing/step" in f and f["metrics/eval_step"][()].tolist() == [3, 6]  # really an old file
    old, new = load(tmp_path / "v2.h5"), load(tmp_path / "v3.h5")
    assert sorted(old.data) == sorted(new.data)
    for name in old.data:
        np.testing.assert_array_equal(old.data[name], new.data[name], err_msg=name)
    assert new.data["metrics/eval_step"].tolist() == [4, 7] and "timing/total" in new.data  # the file's name too
    for tree in (to_xarray(tmp_path / "v2.h5"), to_xarray(tmp_path / "v3.h5")):
        np.testing.assert_array_equal(tree["timing"]["total"].sel(step=5), data["timing/step"][0][:, 4])
        assert tree["metrics"]["eval_step"].values.tolist() == [4, 7]


def test_a_file_being_written_opens_with_its_flushed_rows(tmp_path):
    """A writer mid-run keeps the file marked open for writing; to_xarray (in another process, as a user's
    notebook beside a running job) opens it anyway and sees the flushed rows. Catches: the plain open's error
    passed on (it told the user to h5clear a file whose writer is running)."""
    import subprocess
    import sys

    app = Appender(str(tmp_path / "live.h5"), R, "step", rows_per_flush=4)
    rows = _ring_arrays(np.random.default_rng(2))
    app.write({"status": "running", "strategy": "ring", "config": {}, "world_size": R}, rows, 0, _ring_extras())
    code = "from analysis.data.tree import to_xarray; import sys; t = to_xarray(sys.argv[1]); print(t['step'].size)"
    try:
        got = subprocess.run([sys.executable, "-c", code, str(tmp_path / "live.h5")], capture_output=True, text=True)
    finally:
        app.close()
    assert got.returncode == 0 and got.stdout.split() == [str(S)], got.stderr


def test_a_dataset_without_declared_dimensions_is_named_in_the_error():
    """A new dataset outside every declared group fails at the writer, naming itself and where to declare it."""
    from analysis.data import schema

    with pytest.raises(ValueError, match="newgroup/series: no dimensions declared for it in analysis/data/schema.py"):
        schema.dimensions("newgroup/series", 1, "step", row_series=False)
    assert schema.dimensions("metrics/eval_step", 1, "step", row_series=False) == ("evaluation",)
    assert schema.dimensions("fedlama/interval", 3, "round", row_series=True) == ("rank", "round", "layer")
    assert schema.dimensions("timing/steps_done", 1, "step", row_series=False) == ("rank",)


def test_micro_files_have_named_dimensions(tmp_path):
    sizes = np.array([8, 64, 512], dtype=np.int64)
    data = {
        "micro/allreduce/ours/size_bytes": (sizes, "bytes"),
        "micro/allreduce/ours/time_s": (np.arange(6.0).reshape(3, 2), "s"),
        "micro/allreduce/mpi/size_bytes": (sizes, "bytes"),
        "micro/allreduce/mpi/time_s": (np.arange(12.0).reshape(3, 4), "s"),  # other sample count: its own scale
    }
    results.write(str(tmp_path / "m.h5"), {"kind": "micro", "op": "allreduce", "world_size": 2}, data)
    tree = _open_strictly(tmp_path / "m.h5")
    assert tree["micro"]["allreduce"]["mpi"]["time_s"].sel(size=1).values.tolist() == [4.0, 5.0, 6.0, 7.0]
    assert tree["micro"]["allreduce"]["ours"]["time_s"].dims == ("size", "sample")

"""The appending results writer (schema 3): rows appended over many flushes equal one-shot arrays; what a flush
stores (float32 timings, dimension scales, growing logs); a writer killed between or during flushes leaves a
readable file with every fully flushed row."""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from analysis.data.load import load
from bench.measure.appender import Appender

R, L = 3, 4


def _blocks(rng, lo: int, hi: int) -> dict:
    n = hi - lo
    return {
        "timing/forward": (rng.random((R, n, L)), "s"),
        "timing/step": (rng.random((R, n)), "s"),
        "timing/comm_bytes": (rng.integers(0, 1 << 40, (R, n, L)), "bytes"),
        "timeline/step_start": (1e4 + rng.random((R, n)), "s"),
    }


def _write_in_flushes(path, cuts, seed=0):
    rng = np.random.default_rng(seed)
    app = Appender(str(path), R, "step", rows_per_flush=5)
    whole, lo = {}, 0
    for hi in cuts:
        rows = _blocks(rng, lo, hi)
        evals = np.arange(hi // 5, dtype=np.int64)
        extra = {"layers/name": (np.array(list("abcd")), "1"), "metrics/eval_step": (evals, "step")}
        extra["timing/steps_done"] = (np.full(R, hi, dtype=np.int64), "steps")
        app.write({"status": "running", "completed_steps": hi, "config": {"steps": 99}}, rows, lo, extra)
        for name, (block, _) in rows.items():
            whole[name] = np.concatenate([whole[name], block], axis=1) if name in whole else block
        lo = hi
    app.write({"status": "complete"}, {}, lo, {})
    app.close()
    return whole


def test_rows_appended_over_many_flushes_equal_one_shot_arrays(tmp_path):
    path = tmp_path / "r.h5"
    whole = _write_in_flushes(path, [5, 10, 13, 20, 21, 40])
    run = load(path)
    assert run.attrs["schema_version"] == 3 and run.attrs["status"] == "complete" and run.attrs["config"]["steps"] == 99
    for name, expect in whole.items():
        got = run.data[name]
        assert got.shape == expect.shape, name
        if name in ("timing/forward", "timing/step"):  # float32 on disk: 24 bits
            np.testing.assert_allclose(got, expect, rtol=6e-8, atol=0)
        else:  # int64 bytes and float64 timeline are exact
            np.testing.assert_array_equal(got, expect)
    np.testing.assert_array_equal(run.data["metrics/eval_step"], [1, 2, 3, 4, 5, 6, 7, 8])  # given 0..7: from 1
    np.testing.assert_array_equal(run.data["timing/steps_done"], np.full(R, 40))


def test_what_the_file_stores(tmp_path):
    path = tmp_path / "r.h5"
    _write_in_flushes(path, [5, 12])
    with h5py.File(path) as f:
        assert f["timing/forward"].dtype == np.float32 and f["timeline/step_start"].dtype == np.float64
        assert f["timing/comm_bytes"].dtype == np.int64
        assert [d.label for d in f["timing/forward"].dims] == ["rank", "step", "layer"]
        assert [d[0].name for d in f["timing/forward"].dims] == ["/rank", "/step", "/layer"]
        np.testing.assert_array_equal(f["step"][()], np.arange(1, 13))  # step numbers count from 1
        assert "timing/step" not in f and [d.label for d in f["timing/total"].dims] == ["rank", "step"]
        np.testing.assert_array_equal(f["metrics/eval_step"][()], [1, 2])  # given 0, 1
        assert f["metrics/eval_step"].dims[0][0].name == "/evaluation" and f["evaluation"].shape == (2,)
        assert f["timing/steps_done"].dims[0][0].name == "/rank" and f["layers/name"].dims[0][0].name == "/layer"
        assert f["timing/forward"].chunks[1] == 5  # a flush of rows_per_flush rows writes whole chunks


WRITER = """
import sys, numpy as np
sys.path.insert(0, {root!r})
from bench.measure.appender import Appender
app = Appender({path!r}, 4, "step", rows_per_flush=10, compression={compression!r})
rng = np.random.default_rng(1)
for k in range(100000):
    lo = 10 * k
    block = np.full((4, 10, 60), float(k)) + rng.random((4, 10, 60)) * 1e-3
    app.write({{"status": "running", "completed_steps": lo + 10}}, {{"timing/forward": (block, "s")}}, lo, {{}})
    print(lo + 10, flush=True)  # every row below this is flushed
"""


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_a_killed_writer_leaves_every_flushed_row_readable(tmp_path, compression):
    """SIGKILL at arbitrary moments (so between and, most of the time, during a flush): the file opens (SWMR
    read mode: a killed writer leaves it marked open) and holds at least every row reported flushed, each row
    with the values written."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for attempt in range(4):
        path = str(tmp_path / f"k{attempt}.h5")
        code = WRITER.format(root=root, path=path, compression=compression)
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        flushed = 0
        deadline = time.monotonic() + 0.6 + 0.37 * attempt
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            flushed = int(line) if line.strip() else flushed
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert flushed > 0
        run = load(path)
        fwd = run.data["timing/forward"]
        assert fwd.shape[1] >= flushed, (fwd.shape, flushed)
        complete = fwd.shape[1] - fwd.shape[1] % 10
        k = np.arange(complete // 10).repeat(10)
        np.testing.assert_allclose(fwd[:, :flushed].min(axis=(0, 2)), k[:flushed], atol=2e-3)


def _segment(path, ranks: int, first: int, rows: int, roles: list[str], regrown=True, resume_at=None):
    """One segment of a fedavg-like run: ``rows`` rows of ``ranks`` ranks from row ``first`` (values rank + row)."""
    app = Appender(str(path), ranks, "round", 4, regrown=regrown)
    if resume_at is not None:
        app.resume(resume_at, {}, ranks)
    block = np.add.outer(np.arange(ranks), np.arange(first, first + rows)).astype(np.float32)
    counts = np.ones((ranks, rows), dtype=np.int64)
    app.write({"roles": roles}, {"timing/step": (block, "s"), "fedavg/sampled": (counts, "clients")}, first, {})
    app.close()


def test_a_resumed_fedavg_file_grows_its_rank_axis_and_marks_what_no_rank_wrote(tmp_path):
    """3 ranks for rows 0-3, then 2 ranks for rows 4-5, then 4 ranks for rows 6-7: the rank axis is the largest;
    float rows a segment did not write read NaN, integer ones 0; roles list every rank of the axis."""
    path = tmp_path / "f.h5"
    _segment(path, 3, 0, 4, ["aggregator", "client_host", "client_host"])
    _segment(path, 2, 4, 2, ["aggregator", "client_host"], resume_at=4)
    _segment(path, 4, 6, 2, ["aggregator"] + ["client_host"] * 3, resume_at=6)
    with h5py.File(path, "r") as f:
        step, sampled = f["timing/total"][()], f["fedavg/sampled"][()]
        assert step.shape == (4, 8) and f["rank"][()].tolist() == [0, 1, 2, 3]
        assert np.isnan(step[2, 4:6]).all() and np.isnan(step[3, :6]).all()
        assert step[2, :4].tolist() == [2.0, 3.0, 4.0, 5.0] and step[3, 6:].tolist() == [9.0, 10.0]
        assert sampled[3, :6].tolist() == [0] * 6 and sampled[3, 6:].tolist() == [1, 1]
    _segment(path, 2, 8, 1, ["aggregator", "client_host"], resume_at=8)
    with h5py.File(path, "r") as f:
        assert len(json.loads(f.attrs["roles"])) == 4  # the last segment's 2, then the earlier ones


def test_a_file_whose_rank_axis_is_fixed_is_refused_before_it_is_touched(tmp_path):
    path = tmp_path / "old.h5"
    _segment(path, 2, 0, 4, ["aggregator", "client_host"], regrown=False)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="rank axis is fixed"):
        Appender(str(path), 3, "round", 4).resume(2, {}, 3)
    assert path.read_bytes() == before

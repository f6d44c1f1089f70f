"""Trace export on a hand-made timeline; unreadable files named once and skipped."""

import json

import h5py
import numpy as np
import pytest

from analysis import __main__ as cli
from analysis.data.load import ResultsError, load
from analysis.views.trace import trace_events, write_trace
from bench.measure import results


def timeline_run(path, ranks=2, steps=3, layers=2):
    shape = (ranks, steps, layers)
    starts = np.arange(ranks * steps, dtype=float).reshape(ranks, steps)
    data = {
        "timing/step": (np.full((ranks, steps), 0.5), "s"),
        "timing/forward": (np.full(shape, 0.1), "s"),
        "timing/backward": (np.full(shape, 0.1), "s"),
        "timing/comm": (np.full(shape, 0.05), "s"),
        "timeline/step_start": (starts, "s"),
        "timeline/forward_start": (np.repeat(starts[..., None], layers, axis=2), "s"),
        "timeline/backward_start": (np.repeat(starts[..., None] + 0.2, layers, axis=2), "s"),
        "timeline/comm_start": (np.repeat(starts[..., None] + 0.4, layers, axis=2), "s"),
        "layers/name": (np.array([f"l{i}" for i in range(layers)]), "1"),
    }
    results.write(str(path), {"strategy": "ring", "config": {}, "world_size": ranks}, data)
    return load(path)


def test_trace_export_is_valid_json_with_every_event(tmp_path):
    run = timeline_run(tmp_path / "t.h5")
    out = tmp_path / "t.json"
    n = write_trace(run, str(out))
    doc = json.loads(out.read_text())
    events = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert n == len(doc["traceEvents"])
    assert len(events) == 2 * 3 * (1 + 3 * 2)  # ranks x steps x (step + 3 phases x 2 layers)
    assert {e["pid"] for e in events} == {0, 1} and {e["cat"] for e in events} == {
        "step",
        "forward",
        "backward",
        "comm",
    }
    first = next(e for e in events if e["cat"] == "comm" and e["pid"] == 1 and e["args"]["step"] == 3)  # row 2
    assert first["ts"] == pytest.approx((5 + 0.4) * 1e6) and first["dur"] == pytest.approx(0.05e6)
    assert len([e for e in trace_events(run, first=1, steps=1) if e["ph"] == "X"]) == 2 * 7


def test_trace_without_timeline_is_a_clear_error(tmp_path):
    results.write(
        str(tmp_path / "n.h5"),
        {"strategy": "ring", "config": {}, "world_size": 1},
        {"timing/step": (np.ones((1, 2)), "s")},
    )
    with pytest.raises(ResultsError, match="--trace"):
        trace_events(load(tmp_path / "n.h5"))
    assert cli.main(["trace", str(tmp_path / "n.h5"), "-o", str(tmp_path / "x.json")]) == 1


def test_other_schema_and_non_hdf5_named_once(tmp_path, capsys):
    with h5py.File(tmp_path / "old.h5", "w") as f:
        f.attrs["schema_version"] = 0
    (tmp_path / "notes.h5").write_text("not hdf5")
    assert cli.main(["tables", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("old.h5") == 1 and "schema version 0" in err and err.count("notes.h5") == 1


def test_a_missing_path_says_no_such_file(tmp_path):
    from analysis.data.load import ResultsError, load

    with pytest.raises(ResultsError, match=r"missing\.h5: no such file$"):
        load(tmp_path / "missing.h5")
    (tmp_path / "notes.h5").write_text("not hdf5")
    with pytest.raises(ResultsError, match="notes.h5: not a readable HDF5 file"):
        load(tmp_path / "notes.h5")


def test_the_cli_names_a_missing_path_and_exits_2(tmp_path, capsys):
    assert cli.main(["tables", str(tmp_path / "typo.h5")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"analysis: no such file or folder: {tmp_path / 'typo.h5'}"


def test_trace_first_counts_from_one_and_is_checked(tmp_path, capsys):
    """--first 2 exports steps 2..3 of a 3-step file (rows 1, 2); --first 0 and --first 4 are refused with exit 2
    and one line (4 wrote an empty trace with exit 0)."""
    from analysis import __main__ as cli

    timeline_run(tmp_path / "t.h5")
    out = tmp_path / "t.json"
    assert cli.main(["trace", str(tmp_path / "t.h5"), "-o", str(out), "--first", "2"]) == 0
    steps = {e["args"]["step"] for e in json.loads(out.read_text())["traceEvents"] if e["ph"] == "X"}
    assert steps == {2, 3}
    for first in ("0", "4"):
        assert cli.main(["trace", str(tmp_path / "t.h5"), "-o", str(out), "--first", first]) == 2
    err = capsys.readouterr().err
    assert "steps are numbered from 1" in err and "has steps 1..3" in err

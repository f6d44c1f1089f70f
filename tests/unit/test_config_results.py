"""Config and CLI (defaults, validation, TOML) and the HDF5 writer/reader round trip."""

import json

import numpy as np
import pytest
from mpi4py import MPI

from analysis.load import ResultsError, load
from bench import cli, results
from bench.config import FIELDS, Config
from bench.errors import UsageError
from bench.recorder import Recorder


def test_help_documents_every_option_with_default(capsys):
    with pytest.raises(SystemExit):
        cli.parse(["train", "--help"])
    text = capsys.readouterr().out
    for name in FIELDS:
        flag = "--" + name.replace("_", "-")
        assert flag in text, flag
    assert text.count("(default:") >= len(FIELDS)


@pytest.mark.parametrize(
    "argv,match",
    [
        (["train", "--strategy", "gossip"], "unknown strategy 'gossip'"),
        (["train", "--model", "vgg"], "unknown model"),
        (["train", "--dataset", "imagenet"], "unknown dataset"),
        (["train", "--steps", "0"], "--steps must be positive"),
        (["train", "--batch-size", "-1"], "--batch-size must be positive"),
        (["train", "--dataset", "mnist"], "give --data-dir"),
        (["train", "--data-dir", "/nonexistent/x"], "not a directory"),
        (["train", "--steps", "abc"], "invalid int value"),
        (["train", "--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_a_usage_error(argv, match):
    with pytest.raises(UsageError, match=match):
        cli.parse(argv)


def test_toml_then_command_line(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[train]\nsteps = 7\nbatch-size = 4\nlr = 0.2\ntrace = true\n")
    args = cli.parse(["train", "--config", str(path), "--steps", "9"])
    assert (args.cfg.steps, args.cfg.batch_size, args.cfg.lr, args.cfg.trace) == (9, 4, 0.2, True)
    path.write_text("stepz = 3\n")
    with pytest.raises(UsageError, match="unknown option 'stepz'"):
        cli.parse(["train", "--config", str(path)])


def test_config_json_has_all_defaults():
    cfg = json.loads(Config().to_json())
    assert set(FIELDS) <= set(cfg) and cfg["scaling"] == "weak"


def test_schema_round_trip(tmp_path):
    rec = Recorder(MPI.COMM_SELF, steps=5)
    fwd = rec.add("timing/forward", "s", (3,))
    byt = rec.add("timing/comm_bytes", "bytes", (3,), dtype=np.int64)
    fwd[:] = np.arange(15).reshape(5, 3)
    byt[:] = 7
    rec.gather(4)  # a run that finished 4 of 5 steps
    path = str(tmp_path / "r.h5")
    results.write(
        path,
        {"strategy": "ring", "config": {"steps": 5}, "world_size": 1},
        rec.datasets() | {"layers/name": (np.array(["a", "b", "c"]), "1")},
    )
    run = load(path)
    assert run.strategy == "ring" and run.config == {"steps": 5} and run.world_size == 1
    assert run.data["timing/forward"].shape == (1, 4, 3)
    np.testing.assert_array_equal(run.data["timing/forward"][0], np.arange(12).reshape(4, 3))
    assert run.units["timing/comm_bytes"] == "bytes" and list(run.data["layers/name"]) == ["a", "b", "c"]


def test_reader_rejects_bad_files(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(ResultsError, match="junk.h5"):
        load(junk)
    old = str(tmp_path / "old.h5")
    results.write(old, {}, {})
    import h5py

    with h5py.File(old, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(ResultsError, match="schema version 99"):
        load(old)

"""LEAF's federated tracks as a user runs them on files in LEAF's format (generated here: the real data is not on
this machine): FEMNIST with LEAF's CNN and Shakespeare with LEAF's LSTM, one client per LEAF user."""

import h5py
import numpy as np

from tests.helpers import bench
from tests.unit.test_files import write_leaf

LINE = "To be, or not to be: that is the question. Whether 'tis nobler in the mind to su"


def test_femnist_and_shakespeare_run_with_natural_partitions(tmp_path):
    rng = np.random.default_rng(0)
    femnist = {f"f{u}": ([rng.random(784).round(2).tolist() for _ in range(6)], [u % 62] * 6) for u in range(4)}
    write_leaf(tmp_path / "femnist" / "train", femnist, split_files=2)
    write_leaf(tmp_path / "femnist" / "test", {"f0": femnist["f0"]})
    shakespeare = {f"s{u}": ([LINE[u:] + LINE[:u] for _ in range(5)], [LINE[u]] * 5) for u in range(4)}
    write_leaf(tmp_path / "shakespeare" / "train", shakespeare)
    write_leaf(tmp_path / "shakespeare" / "test", {"s0": shakespeare["s0"]})
    for dataset, model in (("femnist", "femnist-cnn"), ("shakespeare", "lstm")):
        out = tmp_path / f"{dataset}.h5"
        args = ["--strategy", "fedavg", "--dataset", dataset, "--model", model, "--data-dir", str(tmp_path / dataset)]
        args += ["--partition", "natural", "--clients", "4", "--fraction", "0.5", "--rounds", "2", "--quiet"]
        proc = bench(3, "train", *args, "--batch-size", "4", "--out", str(out), timeout=180)
        assert proc.returncode == 0, proc.stderr
        with h5py.File(out) as f:
            assert f.attrs["status"] == "complete" and f["fedavg/clients/samples"][()].min() >= 5

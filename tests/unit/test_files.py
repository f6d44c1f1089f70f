"""The readers of the layouts users have on disk, on small files written here in the real formats: CIFAR-100 binary,
torchvision's CIFAR pickles and MNIST/raw, LEAF JSON (FEMNIST, Shakespeare); one clear error for each wrong file;
and the LEAF baseline models' layers."""

import json
import pickle
import types

import numpy as np
import pytest
import torch

from bench.runtime.errors import UsageError
from bench.workload import data, files, models

from .test_data import write_idx


def write_cifar100(path, coarse, fine, rng):
    pixels = rng.integers(0, 256, (len(fine), 3072))
    rows = np.column_stack([coarse, fine, pixels]).astype(np.uint8)
    path.write_bytes(rows.tobytes())
    return pixels


def cfg_for(dataset, folder, **kw):
    return types.SimpleNamespace(dataset=dataset, data_dir=str(folder), **kw)


def test_cifar100_binary_fine_and_coarse_labels(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    pixels = write_cifar100(folder / "train.bin", [3, 19], [42, 99], rng)
    write_cifar100(folder / "test.bin", [0], [7], rng)
    ds = data.load(cfg_for("cifar100", tmp_path))
    assert ds.classes == 100 and ds.x_train.shape == (2, 3, 32, 32) and ds.y_train.tolist() == [42, 99]
    np.testing.assert_allclose(ds.x_train[1].reshape(-1) * 255, pixels[1], atol=1e-3)
    x, y, _, ys, classes = files.cifar100(tmp_path, coarse=True)
    assert classes == 20 and y.tolist() == [3, 19] and ys.tolist() == [0]


def test_cifar100_binary_errors(tmp_path):
    with pytest.raises(UsageError, match="missing .*train.bin"):
        files.cifar100(tmp_path)
    (tmp_path / "train.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(UsageError, match="not a multiple of the 3074-byte"):
        files.cifar100(tmp_path)


def write_pickle(path, labels_key, labels, rng):
    batch = {b"data": rng.integers(0, 256, (len(labels), 3072)).astype(np.uint8), labels_key.encode(): labels}
    path.write_bytes(pickle.dumps(batch))
    return batch[b"data"]


def test_torchvision_cifar_pickles(tmp_path):
    rng = np.random.default_rng(1)
    ten = tmp_path / "cifar-10-batches-py"
    ten.mkdir()
    first = write_pickle(ten / "data_batch_1", "labels", [1, 2], rng)
    for i in range(2, 6):
        write_pickle(ten / f"data_batch_{i}", "labels", [i], rng)
    write_pickle(ten / "test_batch", "labels", [9], rng)
    ds = data.load(cfg_for("cifar10", tmp_path))
    assert (
        ds.x_train.shape == (6, 3, 32, 32) and ds.y_train.tolist() == [1, 2, 2, 3, 4, 5] and ds.y_test.tolist() == [9]
    )
    np.testing.assert_allclose(ds.x_train[0].reshape(-1) * 255, first[0], atol=1e-3)
    hundred = tmp_path / "c100" / "cifar-100-python"
    hundred.mkdir(parents=True)
    write_pickle(hundred / "train", "fine_labels", np.array([55, 3]), rng)
    write_pickle(hundred / "test", "fine_labels", np.array([1]), rng)
    assert data.load(cfg_for("cifar100", tmp_path / "c100")).y_train.tolist() == [55, 3]


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "train").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(UsageError, match="refusing builtins.print"):
        files.cifar100(tmp_path)
    (folder / "train").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"fine_labels": [1, 2]}))
    with pytest.raises(UsageError, match="expected N x 3072"):
        files.cifar100(tmp_path)


def test_torchvision_mnist_raw_layout(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(2)
    for prefix, n in (("train", 4), ("t10k", 2)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    assert data.load(cfg_for("mnist", tmp_path)).x_train.shape == (4, 1, 28, 28)


def write_leaf(folder, users: dict, split_files=1):
    """LEAF's JSON: users, num_samples, user_data {user: {x, y}}; users spread over ``split_files`` files."""
    folder.mkdir(parents=True)
    names = list(users)
    for f in range(split_files):
        mine = names[f::split_files]
        doc = {
            "users": mine,
            "num_samples": [len(users[u][1]) for u in mine],
            "user_data": {u: {"x": users[u][0], "y": users[u][1]} for u in mine},
        }
        (folder / f"part_{f}.json").write_text(json.dumps(doc))


def test_femnist_json_with_users_as_natural_groups(tmp_path):
    rng = np.random.default_rng(3)
    image = lambda: rng.random(784).round(3).tolist()  # noqa: E731
    write_leaf(tmp_path / "train", {"f0": ([image(), image()], [0, 61]), "f1": ([image()], [5])}, split_files=2)
    write_leaf(tmp_path / "test", {"f0": ([image()], [3])})
    ds = data.load(cfg_for("femnist", tmp_path))
    assert ds.classes == 62 and ds.x_train.shape == (3, 1, 28, 28) and ds.y_train.tolist() == [0, 61, 5]
    assert ds.groups.tolist() == [0, 0, 1] and ds.x_test.shape == (1, 1, 28, 28)


def test_shakespeare_json_windows_and_next_character(tmp_path):
    line = "To be, or not to be: that is the question. Whether 'tis nobler in the mind to su"
    assert len(line) == 80
    write_leaf(tmp_path / "train", {"HAMLET": ([line, line[1:] + "f"], ["f", "f"])})
    write_leaf(tmp_path / "test", {"HAMLET": ([line], ["f"])})
    ds = data.load(cfg_for("shakespeare", tmp_path))
    assert ds.classes == 80 and ds.x_train.shape == (2, 1, 1, 80)
    assert files.LEAF_LETTERS[int(ds.x_train[0, 0, 0, 0])] == "T" and files.LEAF_LETTERS[ds.y_train[0]] == "f"


@pytest.mark.parametrize(
    "kind, users, message",
    [
        ("femnist", {"u": ([[0.5] * 10], [1])}, "784 values"),
        ("femnist", {"u": ([[0.5] * 784], [62])}, "labels must be 0..61"),
        ("shakespeare", {"u": (["short"], ["x"])}, "80-character strings"),
        ("shakespeare", {"u": (["\u00e9" * 80], ["x"])}, "not in LEAF's Shakespeare alphabet"),
    ],
)
def test_leaf_wrong_samples_are_one_clear_error(tmp_path, kind, users, message):
    write_leaf(tmp_path / "train", users)
    write_leaf(tmp_path / "test", users)
    with pytest.raises(UsageError, match=message):
        files.leaf(tmp_path, kind)


def test_leaf_missing_truncated_and_inconsistent_files(tmp_path):
    with pytest.raises(UsageError, match="no LEAF files .*train"):
        files.leaf(tmp_path, "femnist")
    write_leaf(tmp_path / "train", {"u": ([[0.0] * 784], [1])})
    text = (tmp_path / "train" / "part_0.json").read_text()
    (tmp_path / "train" / "part_0.json").write_text(text[: len(text) // 2])
    with pytest.raises(UsageError, match="not valid JSON"):
        files.read_leaf_split(tmp_path / "train")
    (tmp_path / "train" / "part_0.json").write_text(
        json.dumps({"users": ["u"], "num_samples": [2], "user_data": {"u": {"x": [[0.0] * 784], "y": [1]}}})
    )
    with pytest.raises(UsageError, match="num_samples 2, x 1"):
        files.read_leaf_split(tmp_path / "train")


def test_leaf_baseline_models_and_their_layers():
    cases = {
        "logreg": ((1, 1, 60), ["linear"]),
        "femnist-cnn": ((1, 28, 28), ["conv1", "conv2", "fc1", "fc2"]),
        "lstm": ((1, 1, 80), ["embedding", "lstm1", "lstm2", "fc"]),
    }
    for name, (shape, layers) in cases.items():
        model = models.build(name, shape, 80 if name == "lstm" else 62, seed=0)
        assert [layer.name for layer in models.layers_of(model)] == layers, name
        x = torch.randint(0, 80, (3, *shape)).float() if name == "lstm" else torch.rand(3, *shape)
        assert model(x).shape == (3, 80 if name == "lstm" else 62)
    assert models.layers_of(models.build("femnist-cnn", (1, 28, 28), 62, 0))[2].module.out_features == 2048
    with pytest.raises(UsageError, match="model lstm reads token sequences"):
        models.build("lstm", (1, 28, 28), 10, 0)

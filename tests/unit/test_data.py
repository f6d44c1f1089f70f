"""Dataset generators and the MNIST idx / CIFAR-10 binary readers, on small files written here."""

import gzip
import struct

import numpy as np
import pytest

from bench.runtime.errors import UsageError
from bench.workload import data


def write_idx(path, array, compress=False):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as fh:
            fh.write(raw)
    else:
        path.write_bytes(raw)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_reader_round_trip(tmp_path, compress):
    rng = np.random.default_rng(0)
    train_x, test_x = rng.integers(0, 256, (12, 28, 28)), rng.integers(0, 256, (5, 28, 28))
    train_y, test_y = rng.integers(0, 10, 12), rng.integers(0, 10, 5)
    write_idx(tmp_path / "train-images-idx3-ubyte", train_x, compress)
    write_idx(tmp_path / "train-labels-idx1-ubyte", train_y, compress)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test_x, compress)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", test_y, compress)
    ds = data.mnist(tmp_path)
    assert ds.x_train.shape == (12, 1, 28, 28) and ds.x_test.shape == (5, 1, 28, 28)
    np.testing.assert_allclose(ds.x_train[:, 0] * 255, train_x, atol=1e-3)
    np.testing.assert_array_equal(ds.y_test, test_y)


def test_mnist_reader_errors(tmp_path):
    with pytest.raises(UsageError, match="missing train-images-idx3-ubyte"):
        data.mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 2, 2, 2) + b"x")
    with pytest.raises(UsageError, match="header says 8 bytes"):
        data.read_idx((tmp_path / "train-images-idx3-ubyte").read_bytes(), 3, "train images")
    with pytest.raises(UsageError, match="not an idx file"):
        data.read_idx(b"\x01\x02\x03\x04", 3, "x")


def write_cifar(path, labels, rng):
    pixels = rng.integers(0, 256, (len(labels), 3072))
    records = np.concatenate([np.asarray(labels)[:, None], pixels], axis=1).astype(np.uint8)
    path.write_bytes(records.tobytes())
    return pixels


def test_cifar_reader_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    p1 = write_cifar(tmp_path / "data_batch_1.bin", [0, 3, 9], rng)
    write_cifar(tmp_path / "data_batch_2.bin", [1, 2], rng)
    write_cifar(tmp_path / "test_batch.bin", [4], rng)
    ds = data.cifar10(tmp_path)
    assert ds.x_train.shape == (5, 3, 32, 32) and ds.x_test.shape == (1, 3, 32, 32)
    np.testing.assert_array_equal(ds.y_train, [0, 3, 9, 1, 2])
    # pixel layout: R plane, G plane, B plane, each row-major 32x32
    np.testing.assert_allclose(ds.x_train[1, 1, 0, 5] * 255, p1[1, 1024 + 5], atol=1e-3)


def test_cifar_reader_errors(tmp_path):
    with pytest.raises(UsageError, match="missing data_batch_1.bin"):
        data.cifar10(tmp_path)
    (tmp_path / "data_batch_1.bin").write_bytes(b"\x00" * 100)
    (tmp_path / "test_batch.bin").write_bytes(b"\x00" * 3073)
    with pytest.raises(UsageError, match="not a multiple"):
        data.cifar10(tmp_path)


def test_synthetic_deterministic_and_shaped():
    a = data.synthetic(200, (1, 4, 4), 5, seed=1, test_fraction=0.25)
    b = data.synthetic(200, (1, 4, 4), 5, seed=1, test_fraction=0.25)
    assert a.x_train.shape == (150, 1, 4, 4) and a.x_test.shape == (50, 1, 4, 4)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert data.parse_shape("60") == (1, 1, 60)
    with pytest.raises(UsageError):
        data.parse_shape("3x")


def test_digits_is_real_bundled_data():
    ds = data.digits(0, 0.2)
    assert ds.x_train.shape[1:] == (1, 8, 8) and len(ds.y_train) + len(ds.y_test) == 1797
    everything = np.concatenate([ds.x_train.ravel(), ds.x_test.ravel()])  # standardised over the whole set
    assert abs(everything.mean()) < 1e-4 and abs(everything.std() - 1.0) < 1e-4
    assert len(np.unique(ds.x_train)) == 17  # the 17 grey levels 0..16 of the original images


def test_digits_file_reader_equals_scikit_learns_loader():
    """The arrays read from scikit-learn's digits.csv.gz without importing it equal load_digits' own (the library
    is the oracle). Catches: the label column taken as a pixel, a row or column dropped, labels as floats."""
    from sklearn.datasets import load_digits

    pixels, labels = data.digits_arrays()
    bunch = load_digits()
    np.testing.assert_array_equal(pixels, bunch.data)
    np.testing.assert_array_equal(labels, bunch.target)
    assert labels.dtype.kind == "i"


def test_leaf_synthetic_groups_and_labels():
    ds = data.leaf_synthetic(devices=6, alpha=1.0, beta=1.0, seed=0, test_fraction=0.1)
    assert ds.shape == (1, 1, 60) and ds.classes == 10
    assert ds.groups is not None and len(ds.groups) == len(ds.y_train)
    assert set(np.unique(ds.groups)) == set(range(6))
    assert ds.y_train.max() < 10

"""Datasets: generated, bundled with a dependency, or read from files the user points to. No downloads.

Every loader returns a :class:`Dataset` of float32 images shaped (N, C, H, W) (flat data is (N, 1, 1, D))
and int64 labels, split into train and test deterministically from the seed. Readers for MNIST idx and
CIFAR-10 binary files (here) and for CIFAR-100, torchvision's pickles and LEAF JSON (:mod:`files`) check what they
read and raise :class:`UsageError` naming the missing file.
"""

from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.runtime.errors import UsageError
from bench.workload import files
from bench.workload.streams import Salt, stream


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    groups: np.ndarray | None = None  # natural partition id per training sample (LEAF devices)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


def load(cfg) -> Dataset:
    """Load ``cfg.dataset`` (see :mod:`bench.config` for the options each one reads)."""
    if cfg.dataset == "synthetic":
        return synthetic(
            cfg.synthetic_samples, parse_shape(cfg.synthetic_shape), cfg.synthetic_classes, cfg.seed, cfg.test_fraction
        )
    if cfg.dataset == "digits":
        return digits(cfg.seed, cfg.test_fraction)
    if cfg.dataset == "leaf-synthetic":
        return leaf_synthetic(cfg.leaf_devices, cfg.leaf_alpha, cfg.leaf_beta, cfg.seed, cfg.test_fraction)
    if cfg.dataset == "mnist":
        return mnist(Path(cfg.data_dir))
    if cfg.dataset == "cifar10":
        return cifar10(Path(cfg.data_dir))
    if cfg.dataset == "cifar100":
        x, y, xs, ys, classes = files.cifar100(Path(cfg.data_dir))
        return Dataset("cifar100", x, y, xs, ys, classes)
    if cfg.dataset in ("femnist", "shakespeare"):
        x, y, xs, ys, classes, groups = files.leaf(Path(cfg.data_dir), cfg.dataset)
        return Dataset(cfg.dataset, x, y, xs, ys, classes, groups)
    raise UsageError(f"unknown dataset '{cfg.dataset}'")


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"1x16x16"`` -> (1, 16, 16); ``"60"`` -> (1, 1, 60)."""
    try:
        dims = tuple(int(t) for t in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--synthetic-shape '{text}': expected CxHxW or a number") from None
    if len(dims) == 1:
        dims = (1, 1, dims[0])
    if len(dims) != 3 or min(dims) <= 0:
        raise UsageError(f"--synthetic-shape '{text}': expected CxHxW or a number, all positive")
    return dims


def _split(x, y, test_fraction, seed, groups=None) -> tuple:
    rng = stream(seed, salt=Salt.SPLIT)
    perm = rng.permutation(len(y))
    n_test = max(1, int(round(test_fraction * len(y))))
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    g = None if groups is None else groups[train]
    return x[train], y[train], x[test], y[test], g


def synthetic(n: int, shape: tuple[int, int, int], classes: int, seed: int, test_fraction: float) -> Dataset:
    """Gaussian mixture: class means mu_c ~ N(0, I), samples mu_c + 2 N(0, I), equal class sizes."""
    rng = stream(seed, salt=Salt.SYNTHETIC)
    dim = int(np.prod(shape))
    means = rng.standard_normal((classes, dim)).astype(np.float32)
    y = np.arange(n) % classes
    x = means[y] + 2.0 * rng.standard_normal((n, dim)).astype(np.float32)
    x = x.reshape((n, *shape)).astype(np.float32)
    xt, yt, xs, ys, _ = _split(x, y.astype(np.int64), test_fraction, seed)
    return Dataset("synthetic", xt, yt, xs, ys, classes)


def digits(seed: int, test_fraction: float) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 real images, 10 classes), standardised with the pixel mean and
    standard deviation over the whole set (as MNIST is with 0.1307 / 0.3081): plain SGD on the raw [0, 16] or
    [0, 1] scale leaves the CNN stuck near chance for its first hundred steps."""
    data, target = digits_arrays()
    pixels = data.astype(np.float32) / 16.0
    x = ((pixels - pixels.mean()) / pixels.std()).reshape(-1, 1, 8, 8)
    y = target.astype(np.int64)
    xt, yt, xs, ys, _ = _split(x, y, test_fraction, seed)
    return Dataset("digits", xt, yt, xs, ys, 10)


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(1797 x 64 pixels, labels) as ``sklearn.datasets.load_digits`` returns them, read from the file scikit-learn
    ships (``datasets/data/digits.csv.gz``: 64 pixel columns, then the label) without importing scikit-learn:
    its import costs each rank about 1 s of CPU, the file 0.1 s (every run on digits pays it once per rank)."""
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is None or not path.exists():  # another layout: ask scikit-learn itself
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.data, bunch.target
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1], table[:, -1].astype(np.int64)


def leaf_synthetic(
    devices: int,
    alpha: float,
    beta: float,
    seed: int,
    test_fraction: float,
    dim: int = 60,
    classes: int = 10,
    max_samples: int = 1000,
) -> Dataset:
    """Synthetic(alpha, beta) of LEAF (Caldas et al. 2018) as defined in FedProx (Li et al. 2020, Sec. 5.1):
    for device k, u_k ~ N(0, alpha), B_k ~ N(0, beta); W_k, b_k ~ N(u_k, 1); v_k ~ N(B_k, 1);
    x ~ N(v_k, Sigma) with Sigma_jj = j^-1.2; y = argmax(W_k x + b_k). Device sizes ~ lognormal(4, 2) + 50,
    capped at ``max_samples`` to bound memory. Each device's samples share one natural group id."""
    rng = stream(seed, salt=Salt.LEAF)
    sizes = np.minimum(rng.lognormal(4, 2, devices).astype(int) + 50, max_samples)
    sigma = np.arange(1, dim + 1, dtype=np.float64) ** -1.2
    xs, ys, gs = [], [], []
    for k in range(devices):
        u, b_mean = rng.normal(0, np.sqrt(alpha)), rng.normal(0, np.sqrt(beta))
        w, b = rng.normal(u, 1, (classes, dim)), rng.normal(u, 1, classes)
        v = rng.normal(b_mean, 1, dim)
        x = v + rng.standard_normal((sizes[k], dim)) * np.sqrt(sigma)
        ys.append(np.argmax(x @ w.T + b, axis=1))
        xs.append(x)
        gs.append(np.full(sizes[k], k))
    x = np.concatenate(xs).astype(np.float32).reshape(-1, 1, 1, dim)
    y, g = np.concatenate(ys).astype(np.int64), np.concatenate(gs)
    xt, yt, xs_, ys_, gt = _split(x, y, test_fraction, seed, groups=g)
    return Dataset("leaf-synthetic", xt, yt, xs_, ys_, classes, groups=gt)


# ---- file readers --------------------------------------------------------------------------------------
def _open_maybe_gz(folder: Path, names: list[str]) -> bytes:
    for name in names:
        for candidate in (folder / name, folder / (name + ".gz")):
            if candidate.is_file():
                opener = gzip.open if candidate.suffix == ".gz" else open
                with opener(candidate, "rb") as fh:
                    return fh.read()
    raise UsageError(f"--data-dir {folder}: missing {names[0]} (or {names[0]}.gz)")


def read_idx(raw: bytes, expect_dims: int, what: str) -> np.ndarray:
    """Parse an idx file (LeCun's MNIST format): magic 0x0000 08 <ndim>, big-endian uint32 dims, uint8 data."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] != expect_dims:
        raise UsageError(f"{what}: not an idx file of {expect_dims} dimensions of unsigned bytes")
    dims = np.frombuffer(raw, dtype=">u4", count=expect_dims, offset=4).astype(int)
    start = 4 + 4 * expect_dims
    count = int(np.prod(dims))
    if len(raw) - start != count:
        raise UsageError(f"{what}: header says {count} bytes of data, file has {len(raw) - start}")
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(dims)


def mnist(folder: Path) -> Dataset:
    """MNIST (or Fashion-MNIST) from the four idx files, plain or gzipped, scaled to [0, 1] (also in torchvision's
    ``MNIST/raw/``)."""
    if (folder / "MNIST" / "raw").is_dir():
        folder = folder / "MNIST" / "raw"
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(
            _open_maybe_gz(folder, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"]),
            3,
            f"{prefix} images",
        )
        labels = read_idx(
            _open_maybe_gz(folder, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"]),
            1,
            f"{prefix} labels",
        )
        if images.shape[0] != labels.shape[0]:
            raise UsageError(f"--data-dir {folder}: {images.shape[0]} {split} images but {labels.shape[0]} labels")
        parts[split] = ((images.astype(np.float32) / 255.0)[:, None], labels.astype(np.int64))
    return Dataset("mnist", *parts["train"], *parts["test"], 10)


CIFAR_RECORD = 1 + 3 * 32 * 32


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch: records of 1 label byte + 3072 pixel bytes (R, G, B planes of 32x32)."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % CIFAR_RECORD:
        raise UsageError(f"{path}: size {raw.size} is not a multiple of the {CIFAR_RECORD}-byte CIFAR-10 record")
    rec = raw.reshape(-1, CIFAR_RECORD)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise UsageError(f"{path}: label {labels.max()} out of range 0..9; not a CIFAR-10 binary batch")
    return (rec[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0), labels


def cifar10(folder: Path) -> Dataset:
    """CIFAR-10 binary version: ``data_batch_*.bin`` and ``test_batch.bin`` (also inside
    ``cifar-10-batches-bin/``), or torchvision's python version (``cifar-10-batches-py/``)."""
    if (folder / "cifar-10-batches-py").is_dir():
        return Dataset("cifar10", *files.cifar10_pickles(folder / "cifar-10-batches-py"), 10)
    if (folder / "cifar-10-batches-bin").is_dir():
        folder = folder / "cifar-10-batches-bin"
    train_files = sorted(folder.glob("data_batch_*.bin"))
    if not train_files:
        raise UsageError(f"--data-dir {folder}: missing data_batch_1.bin (CIFAR-10 binary version)")
    if not (folder / "test_batch.bin").is_file():
        raise UsageError(f"--data-dir {folder}: missing test_batch.bin (CIFAR-10 binary version)")
    batches = [read_cifar_batch(f) for f in train_files]
    xs, ys = read_cifar_batch(folder / "test_batch.bin")
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    return Dataset("cifar10", x, y, xs, ys, 10)

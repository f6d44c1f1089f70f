"""Readers for the layouts users already have on disk (never downloads): CIFAR-100 binary, torchvision's CIFAR
pickles, and LEAF's JSON (FEMNIST, Shakespeare). Each checks what it reads and raises :class:`UsageError`
naming the file it expected or the field that is wrong. MNIST idx and CIFAR-10 binary are in :mod:`data`.

- CIFAR-100 binary (``cifar-100-binary/``): ``train.bin``, ``test.bin``; records of 1 coarse label byte, 1 fine
  label byte, 3072 pixel bytes (R, G, B planes of 32x32). Fine labels (100 classes) by default.
- torchvision's python version (``cifar-10-batches-py/``: ``data_batch_1..5``, ``test_batch``; ``cifar-100-python/``:
  ``train``, ``test``): pickled dicts of ``data`` (N x 3072 uint8) and ``labels`` / ``fine_labels``. Read with an
  unpickler that accepts numpy arrays and plain containers only, so a file cannot run code.
- LEAF (``train/*.json``, ``test/*.json``, each with ``users``, ``num_samples``, ``user_data``: {user: {x, y}}):
  FEMNIST (x: 784 floats, a 28x28 image; y: 0..61) and Shakespeare (x: 80-character strings, y: the next
  character; characters coded by LEAF's 80-letter alphabet). Training samples keep their user as the natural
  group (``--partition natural``: one LEAF user per client or rank).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

from bench.runtime.errors import UsageError

CIFAR100_RECORD = 2 + 3 * 32 * 32
LEAF_LETTERS = "\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}"
SHAKESPEARE_WINDOW = 80
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


def read_cifar100_binary(path: Path, coarse: bool = False) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise UsageError(f"--data-dir: missing {path} (CIFAR-100 binary version: train.bin, test.bin)")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % CIFAR100_RECORD:
        raise UsageError(f"{path}: size {raw.size} is not a multiple of the {CIFAR100_RECORD}-byte CIFAR-100 record")
    rec = raw.reshape(-1, CIFAR100_RECORD)
    labels = rec[:, 0 if coarse else 1].astype(np.int64)
    if labels.max() >= (20 if coarse else 100):
        raise UsageError(f"{path}: label {labels.max()} out of range; not a CIFAR-100 binary file")
    return rec[:, 2:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, labels


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}: a CIFAR pickle holds arrays and lists only")


def read_cifar_pickle(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One torchvision CIFAR pickle: images (N, 3, 32, 32) in [0, 1] and labels under ``label_key``."""
    if not path.is_file():
        raise UsageError(f"--data-dir: missing {path} (torchvision's CIFAR python version)")
    try:
        with open(path, "rb") as fh:
            batch = _ArraysOnly(fh, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key.encode()], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{path}: not a CIFAR python batch with data and {label_key} ({exc})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise UsageError(f"{path}: data {data.shape} and {len(labels)} labels; expected N x 3072 and N labels")
    return data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, labels


def cifar10_pickles(folder: Path):
    train = [read_cifar_pickle(folder / f"data_batch_{i}", "labels") for i in range(1, 6)]
    return (*_concat(train), *read_cifar_pickle(folder / "test_batch", "labels"))


def cifar100(folder: Path, coarse: bool = False):
    """(x_train, y_train, x_test, y_test, classes) from the binary or torchvision's python layout."""
    key = "coarse_labels" if coarse else "fine_labels"
    for sub in ("cifar-100-python", "."):
        if (folder / sub / "train").is_file() and not (folder / sub / "train.bin").exists():
            train = read_cifar_pickle(folder / sub / "train", key)
            return (*train, *read_cifar_pickle(folder / sub / "test", key), 20 if coarse else 100)
    binary = folder / "cifar-100-binary" if (folder / "cifar-100-binary").is_dir() else folder
    train = read_cifar100_binary(binary / "train.bin", coarse)
    return (*train, *read_cifar100_binary(binary / "test.bin", coarse), 20 if coarse else 100)


def _concat(parts):
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ---- LEAF ------------------------------------------------------------------------------------------------
def read_leaf_split(folder: Path) -> list[tuple[str, list, list]]:
    """Every user's (name, x, y) from the JSON files of one LEAF split folder, in file and user order."""
    files = sorted(folder.glob("*.json"))
    if not files:
        raise UsageError(f"--data-dir: no LEAF files {folder}/*.json (LEAF's train/ and test/ folders)")
    users = []
    for path in files:
        try:
            with open(path) as fh:
                doc = json.load(fh)
            for name, count in zip(doc["users"], doc["num_samples"]):
                record = doc["user_data"][name]
                if len(record["x"]) != count or len(record["y"]) != count:
                    raise ValueError(f"user {name}: num_samples {count}, x {len(record['x'])}, y {len(record['y'])}")
                users.append((name, record["x"], record["y"]))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: not valid JSON ({exc})") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{path}: not a LEAF file (users, num_samples, user_data: x, y): {exc}") from None
    return users


def _femnist_arrays(users, path: Path) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([s for _, xs, _ in users for s in xs], dtype=np.float32)
    y = np.array([t for _, _, ys in users for t in ys], dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != 784:
        raise UsageError(f"{path}: FEMNIST samples must be 784 values (28x28), got shape {x.shape}")
    if y.size and (y.min() < 0 or y.max() > 61):
        raise UsageError(f"{path}: FEMNIST labels must be 0..61, got {y.min()}..{y.max()}")
    return x.reshape(-1, 1, 28, 28), y


def _encode(text: str, path: Path) -> list[int]:
    codes = [LEAF_LETTERS.find(c) for c in text]
    if -1 in codes:
        raise UsageError(f"{path}: character {text[codes.index(-1)]!r} is not in LEAF's Shakespeare alphabet")
    return codes


def _shakespeare_arrays(users, path: Path) -> tuple[np.ndarray, np.ndarray]:
    xs = [s for _, x, _ in users for s in x]
    if any(len(s) != SHAKESPEARE_WINDOW for s in xs):
        raise UsageError(f"{path}: Shakespeare samples must be {SHAKESPEARE_WINDOW}-character strings")
    x = np.array([_encode(s, path) for s in xs], dtype=np.float32).reshape(-1, 1, 1, SHAKESPEARE_WINDOW)
    y = np.array([_encode(t, path)[0] if len(t) == 1 else -1 for _, _, ys in users for t in ys], dtype=np.int64)
    if (y < 0).any():
        raise UsageError(f"{path}: Shakespeare targets must be single characters")
    return x, y


def leaf(folder: Path, kind: str):
    """(x_train, y_train, x_test, y_test, classes, groups) of LEAF's ``femnist`` or ``shakespeare``."""
    arrays = {"femnist": (_femnist_arrays, 62), "shakespeare": (_shakespeare_arrays, len(LEAF_LETTERS))}
    to_arrays, classes = arrays[kind]
    train_users = read_leaf_split(folder / "train")
    x, y = to_arrays(train_users, folder / "train")
    xs, ys = to_arrays(read_leaf_split(folder / "test"), folder / "test")
    groups = np.concatenate([np.full(len(u[2]), i, dtype=np.int64) for i, u in enumerate(train_users)])
    return x, y, xs, ys, classes, groups

"""The HDF5 results writer (schema in results/README.md).

Rank 0 rewrites the whole file at each flush into ``<out>.tmp`` and renames it over ``<out>``: a rename is
atomic on POSIX file systems, so a run killed at any moment leaves either the previous complete file or the
new one, never a half-written one. The cost is one rewrite per flush, small next to training.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

SCHEMA_VERSION = 1


def check_writable(path: str) -> None:
    """Raise OSError now, before training, if ``path`` cannot be created (parents are created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    probe = p.with_name(p.name + ".probe")
    with open(probe, "wb"):
        pass
    probe.unlink()


def write(path: str, attrs: dict, datasets: dict[str, tuple[np.ndarray, str]]) -> None:
    """Write root ``attrs`` (dicts and lists become JSON strings) and ``datasets`` (name -> (array, units))."""
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION
        for key, value in attrs.items():
            if isinstance(value, (dict, list, tuple)):
                value = json.dumps(value, sort_keys=True)
            f.attrs[key] = value
        for name, (array, units) in datasets.items():
            array = np.asarray(array)
            if array.dtype.kind == "U":
                array = array.astype(h5py.string_dtype())
            ds = f.create_dataset(name, data=array)
            ds.attrs["units"] = units
    os.replace(tmp, path)

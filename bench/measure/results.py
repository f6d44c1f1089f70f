"""One-shot HDF5 results files (schema in results/README.md): ``micro`` results and test fixtures, written once
and whole into ``<out>.tmp``, then renamed over ``<out>`` (atomic on POSIX file systems). Training runs append
instead (:mod:`bench.measure.appender`): a file rewritten whole at every flush costs time that grows with the run.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from bench.measure.appender import SCHEMA_VERSION, attr_value, storable


def check_writable(path: str) -> None:
    """Raise OSError now, before training, if ``path`` cannot be created (parents are created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    probe = p.with_name(p.name + ".probe")
    with open(probe, "wb"):
        pass
    probe.unlink()


def write(path: str, attrs: dict, datasets: dict[str, tuple[np.ndarray, str]], schema: int = SCHEMA_VERSION) -> None:
    """Write root ``attrs`` (dicts and lists become JSON strings) and ``datasets`` (name -> (array, units)).
    ``schema``: the version to claim (tests write version-1 files to check they still load)."""
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["schema_version"] = schema
        for key, value in attrs.items():
            f.attrs[key] = attr_value(value)
        for name, (array, units) in datasets.items():
            ds = f.create_dataset(name, data=storable(array))
            ds.attrs["units"] = units
    os.replace(tmp, path)

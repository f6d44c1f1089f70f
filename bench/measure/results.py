"""One-shot HDF5 results files (schema in results/README.md): ``micro`` results and test fixtures, written once
and whole into ``<out>.tmp``, then renamed over ``<out>`` (atomic on POSIX file systems). Training runs append
instead (:mod:`bench.measure.appender`): a file rewritten whole at every flush costs time that grows with the run.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from analysis.data import schema as _schema
from bench.measure.appender import SCHEMA_VERSION, attach_dimensions, attr_value, scale_holder, storable


def check_writable(path: str) -> None:
    """Raise OSError now, before training, if ``path`` cannot be created (parents are created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    probe = p.with_name(p.name + ".probe")
    with open(probe, "wb"):
        pass
    probe.unlink()


def write(
    path: str,
    attrs: dict,
    datasets: dict[str, tuple[np.ndarray, str]],
    schema: int = SCHEMA_VERSION,
    row_unit: str = "step",
) -> None:
    """Write root ``attrs`` (dicts and lists become JSON strings) and ``datasets`` (name -> (array, units), names
    and step numbers as the bench keeps them: 0-based rows). ``schema``: the version to claim; 3 stores it as the
    appending writer does (renamed, numbered from 1, named dimensions; every array of 2 or more axes outside
    ``micro/`` is a row series of ``row_unit``s), 1 and 2 store the arrays as given (tests write old files to
    check they still load)."""
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["schema_version"] = schema
        for key, value in attrs.items():
            f.attrs[key] = attr_value(value)
        for name, (array, units) in datasets.items():
            array = storable(array)
            stored, array = _schema.to_file(name, array) if schema >= 3 else (name, array)
            ds = f.create_dataset(stored, data=array)
            ds.attrs["units"] = units
            if schema >= 3:
                dims = _schema.array_dimensions(name, array.ndim, row_unit)
                attach_dimensions(ds, dims, scale_holder(f, stored), growing=False)
    os.replace(tmp, path)

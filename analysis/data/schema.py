"""The results file's naming and numbering, in one place for its writers (bench.measure) and its reader (load).

Schema 3 (issue 27) made the file load as data in tools that know dimensions (xarray through h5netcdf, netCDF):
- **No dataset is named like a dimension.** xarray makes a variable named like a dimension that dimension's
  coordinate, so schema 2's ``timing/step`` (rank x step) became a 2-D coordinate and ``.sel(step=5)`` raised, and
  ``ps/updates/step`` or ``fedavg/clients/rank`` made whole files fail to open. Four datasets are renamed in the
  file (:data:`FILE_NAMES`); in memory (``analysis.data.load``, the writers' recorders) they keep their old names, so
  schema 1 and 2 files and schema 3 files read alike.
- **Every dataset has named dimensions** (:func:`dimensions`), each backed by a dimension scale: no phony dims.
- **Steps and rounds count from 1** in the file, as every printout and figure numbers them: the row scale is
  1..S, and the datasets in :data:`COUNTED_FROM_ONE` hold 1-based numbers. The bench keeps 0-based row indices in
  memory and adds 1 on writing (:func:`to_file`); ``analysis.data.load`` adds 1 to schema 1 and 2 files' values, so in
  the analysis every step and round number is 1-based whatever the file's schema (:func:`from_file`).
"""

from __future__ import annotations

import numpy as np

VERSION = 3

FILE_NAMES = {
    "timing/step": "timing/total",
    "fedavg/clients/round": "fedavg/clients/round_number",
    "fedavg/clients/rank": "fedavg/clients/host_rank",
    "ps/updates/step": "ps/updates/step_number",
}
"""In-memory name -> schema 3 file name, for the datasets whose schema 2 name was a dimension's."""
MEMORY_NAMES = {file: memory for memory, file in FILE_NAMES.items()}

COUNTED_FROM_ONE = ("metrics/eval_step", "fedavg/clients/round", "ps/updates/step")
"""Datasets holding step or round numbers (in-memory names): 1-based in schema 3 and in the analysis."""

RECORD_DIMENSIONS = {
    "metrics/": "evaluation",  # metrics/loss is a row series (rank, step); the rest are one row per evaluation
    "fedavg/clients/": "participation",  # one row per sampled client per round
    "ps/updates/": "update",  # one row per gradient a server applied
    "layers/": "layer",
    "data/": "partition",
    "micro/": "size",  # micro/<op>/<impl>/*: one row per message size (time_s: size x sample)
}
PER_RANK = ("timing/steps_done", "fedavg/peak_rss")
SCALE_NAMES = ("rank", "step", "round", "layer", "evaluation", "participation", "update", "partition", "size", "sample")
"""The dimension scales (root datasets holding each dimension's index): coordinates, not measurements."""


def file_name(name: str) -> str:
    return FILE_NAMES.get(name, name)


def memory_name(name: str) -> str:
    """The name the analysis uses for a dataset the file calls ``name`` (older files hold none of the schema 3
    names, so this holds for every schema)."""
    return MEMORY_NAMES.get(name, name)


def to_file(name: str, array: np.ndarray) -> tuple[str, np.ndarray]:
    """A bench dataset as schema 3 stores it: renamed, step and round numbers counted from 1."""
    if name in COUNTED_FROM_ONE:
        array = np.asarray(array) + 1
    return file_name(name), array


def from_file(name: str, array: np.ndarray, version: int) -> np.ndarray:
    """A dataset read from a file of schema ``version`` (``name``: in-memory), with 1-based numbers."""
    if version < 3 and name in COUNTED_FROM_ONE:
        return np.asarray(array) + 1
    return array


def array_dimensions(name: str, ndim: int, row_unit: str) -> tuple[str, ...]:
    """:func:`dimensions` of a dataset known only by its name and shape (a file written whole, an old file): every
    array of two or more axes outside ``micro/`` is a row series (``micro/*/time_s`` is size x sample)."""
    return dimensions(name, ndim, row_unit, row_series=ndim >= 2 and not name.startswith("micro/"))


def dimensions(name: str, ndim: int, row_unit: str, row_series: bool) -> tuple[str, ...]:
    """The named dimensions of dataset ``name`` (in-memory name): a row series is (rank, step or round, layer);
    the others by their group (:data:`RECORD_DIMENSIONS`)."""
    if row_series:
        return ("rank", row_unit, "layer")[:ndim]
    if name in PER_RANK:
        return ("rank",)
    for prefix, dim in RECORD_DIMENSIONS.items():
        if name.startswith(prefix):
            return (dim, "sample")[:ndim]
    raise ValueError(f"{name}: no dimensions declared for it in analysis/data/schema.py")

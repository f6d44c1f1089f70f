"""Read a syncbench results file: root attributes at once, datasets lazily (only those a table asks for).

A report over hundreds of runs, or over one run of 256 ranks x 10,000 steps, must not load per-layer arrays it
never uses: :class:`RunResults` ``.data`` is a read-only mapping that opens the file and reads a dataset on first
access (then keeps it), so a speedup table reads ``timing/step`` and nothing per layer; and the tables that do use
per-layer series take their sums a block of rows at a time (:meth:`LazyDatasets.summed`, :meth:`~LazyDatasets.
layer_means`), never holding one whole. Schema 1, 2 and 3 files load alike (:mod:`analysis.data.schema`: the names of
schema 2, with step and round numbers counted from 1); a file whose writer is running or was killed opens in SWMR
read mode (:func:`open_results`).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from analysis.data import schema

SUPPORTED_SCHEMAS = (1, 2, 3)  # 2: appended row by row, float32 timings; 3: named dimensions, counted from 1
BLOCK_ROWS = 2048  # rows read at a time by the blockwise reductions


class ResultsError(Exception):
    """A file that is not a readable syncbench results file of a supported schema; names the file."""


def _decode(value):
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def _read(obj: h5py.Dataset) -> np.ndarray:
    """The whole dataset; float32 (schema 2's timings) comes back as float64, so sums and differences in the
    analysis are carried out at the precision they were before."""
    arr = obj[()]
    if obj.dtype.kind == "O":
        arr = np.array([a.decode() if isinstance(a, bytes) else a for a in arr])
    elif obj.dtype == np.float32:
        arr = arr.astype(np.float64)
    return arr


def sum_layers(arr: np.ndarray) -> np.ndarray:
    """(ranks, rows) float64: a row series summed over its axes past the second (its layers); 2-D series as they
    are."""
    arr = np.asarray(arr, dtype=np.float64)
    return arr.reshape(*arr.shape[:2], -1).sum(axis=2) if arr.ndim > 2 else arr


def open_results(path: str) -> h5py.File:
    """Open for reading. A file whose writer is running or was killed is marked as open for writing, and HDF5
    refuses a plain open: such a file is opened in SWMR read mode, which sees every flushed row."""
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        if "already open for write" not in str(exc):
            raise
        return h5py.File(path, "r", swmr=True)


class LazyDatasets(Mapping):
    """Dataset name -> array, read from ``path`` on first access. Names (and units) come from one walk of the
    file's tree when it is loaded, which reads no data. Names are the analysis' (:mod:`analysis.data.schema`; a schema 3
    file's own name, such as ``timing/total``, is accepted too); step and round numbers are 1-based."""

    def __init__(self, path: str, names: list[str], units: dict[str, str], version: int = schema.VERSION):
        self._path, self._names, self.units, self.version = path, names, units, version
        self._cache: dict[str, np.ndarray] = {}
        self._reduced: dict[str, np.ndarray] = {}  # reductions read block by block (summed, layer_means)

    def _stored(self, name: str) -> str:
        return schema.file_name(name) if self.version >= 3 else name

    def _known(self, name: str) -> str:
        """The analysis' name for ``name`` (which may be the file's own)."""
        return schema.memory_name(name)

    def __getitem__(self, name: str) -> np.ndarray:
        name = self._known(name)
        if name not in self._cache:
            if name not in self.units:
                raise KeyError(name)
            with open_results(self._path) as f:
                self._cache[name] = schema.from_file(name, _read(f[self._stored(name)]), self.version)
        return self._cache[name]

    def __setitem__(self, name: str, value: np.ndarray) -> None:  # derived series (tests, readers of v1 names)
        self._cache[name] = value
        if name not in self.units:
            self.units[name] = ""
            self._names.append(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name) -> bool:
        return self._known(name) in self.units

    def loaded(self) -> list[str]:
        """Names read whole so far (the report's laziness is tested with this)."""
        return sorted(self._cache)

    def summed(self, name: str) -> np.ndarray:
        """(ranks, rows) float64: the series summed over its axes past the second (its layers), read BLOCK_ROWS
        rows at a time, so a (256 x 10,000 x 60) series costs (256 x 10,000) values, never itself whole. Cached."""
        name = self._known(name)
        key = f"summed:{name}"
        if key not in self._reduced:
            if name in self._cache or name not in self.units:
                self._reduced[key] = sum_layers(self[name])
            else:
                self._reduced[key] = self._summed_in_blocks(name)
        return self._reduced[key]

    def layer_means(self, name: str, ranks: np.ndarray, warmup: int) -> np.ndarray:
        """(layers,) float64: the mean over ``ranks`` and rows ``>= warmup`` of a per-layer series, read in blocks
        (all rows when there are no more than ``warmup``, as ``analysis.stats.metrics`` does)."""
        name = self._known(name)
        if name in self._cache:
            arr = np.asarray(self[name], dtype=np.float64)
            return recorded_mean(arr[ranks, warmup if arr.shape[1] > warmup else 0 :], axis=(0, 1))
        with open_results(self._path) as f:
            ds = f[self._stored(name)]
            first = warmup if ds.shape[1] > warmup else 0
            total, count = np.zeros(ds.shape[2:], dtype=np.float64), np.zeros(ds.shape[2:], dtype=np.int64)
            for lo in range(first, ds.shape[1], BLOCK_ROWS):
                block = ds[:, lo : lo + BLOCK_ROWS][ranks].astype(np.float64)
                total += np.nansum(block, axis=(0, 1))  # NaN: a rank a resumed fedavg segment did not have
                count += (~np.isnan(block)).sum(axis=(0, 1))
        return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)

    def _summed_in_blocks(self, name: str) -> np.ndarray:
        with open_results(self._path) as f:
            ds = f[self._stored(name)]
            out = np.empty(ds.shape[:2], dtype=np.float64)
            for lo in range(0, ds.shape[1], BLOCK_ROWS):
                out[:, lo : lo + BLOCK_ROWS] = sum_layers(ds[:, lo : lo + BLOCK_ROWS])
        return out


def recorded_mean(values: np.ndarray, axis) -> np.ndarray:
    """The mean over ``axis`` of the values that were recorded: a fedavg run resumed on another rank count has
    NaN rows where a segment did not have the rank (results/README.md); elsewhere the plain mean."""
    if not np.isnan(values).any():
        return values.mean(axis=axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a cell no rank recorded stays NaN
        return np.nanmean(values, axis=axis)


@dataclass
class RunResults:
    path: str
    attrs: dict
    data: Mapping = field(default_factory=dict)

    @property
    def units(self) -> dict[str, str]:
        return getattr(self.data, "units", {})

    @property
    def config(self) -> dict:
        return self.attrs["config"]

    @property
    def strategy(self) -> str:
        return self.attrs["strategy"]

    @property
    def world_size(self) -> int:
        return int(self.attrs["world_size"])

    @property
    def name(self) -> str:
        return Path(self.path).name


def load(path: str | Path) -> RunResults:
    path = str(path)
    if not Path(path).exists():
        raise ResultsError(f"{path}: no such file")
    try:
        f = open_results(path)
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        attrs = {k: _decode(v) for k, v in f.attrs.items()}
        version = attrs.get("schema_version")
        if version not in SUPPORTED_SCHEMAS:
            raise ResultsError(f"{path}: schema version {version!r}, this analysis reads {SUPPORTED_SCHEMAS}")
        names: list[str] = []
        units: dict[str, str] = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and not h5py.h5ds.is_scale(obj.id):  # scales: coordinates
                name = schema.memory_name(name)
                names.append(name)
                units[name] = _decode(obj.attrs.get("units", ""))

        f.visititems(visit)
    return RunResults(path, attrs, LazyDatasets(path, names, units, version))

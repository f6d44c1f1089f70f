"""The appending results writer (schema 3, results/README.md): rank 0 adds each flush's rows; it never rewrites.

The file is created at the first flush, every row series chunked and resizable along its row axis, and then put in
HDF5's single-writer/multiple-reader (SWMR) mode. From then on a flush resizes the row series and writes only the
rows since the last one, and HDF5 orders its metadata writes so that the file on disk is readable at any moment: by
a reader beside the running writer, or after the writer was killed, mid-flush included (tested with SIGKILL). So
rank 0 holds one flush's rows, not the run's, and a flush costs what its rows cost, however long the run.

A killed writer leaves the file marked as open for writing. ``analysis.data.load`` then opens it in SWMR read mode (with
plain h5py: ``h5py.File(path, "r", swmr=True)``; for other tools ``h5clear -s FILE`` clears the mark).

Timings (units ``s``) are stored as float32: 24 significant bits, a resolution of 6e-8 of the value (0.06 us on
a 1 s step), far below the jitter of the clocks that measured them; ``timeline/*`` (seconds since the run's
start, up to hours) stay float64. Every dataset carries named dimensions backed by dimension scales (a row series:
``rank``, ``step`` or ``round``, ``layer``; the others by :func:`analysis.data.schema.dimensions`), steps and rounds are
numbered from 1, and no dataset is named like a dimension (:mod:`analysis.data.schema`: the renames happen here, at the
file's edge), so xarray/h5netcdf readers see named dimensions. ``--compression lzf|gzip`` compresses the chunks.
"""

from __future__ import annotations

import json

import h5py
import numpy as np

from analysis.data import schema
from bench.measure.h5flags import clear_write_flags

SCHEMA_VERSION = schema.VERSION
ROW_DIMENSIONS = ("step", "round")  # numbered from 1 (schema 3); every other scale is an index from 0
GROWING = ("metrics/eval_step", "metrics/test_accuracy", "metrics/test_loss", "fedavg/clients/", "ps/updates/")
"""Datasets that only ever grow by appending (evaluations, per-client and per-update logs): a flush writes their
new tail. Every other dataset that is not a row series is small (per rank, layer or partition) and written whole."""
CHUNK_BYTES = 1 << 20  # ~1 MiB chunks: HDF5's advice; a flush of 50 rows of 256 ranks x 60 layers is 3 MiB


def _stored_dtype(name: str, units: str, dtype: np.dtype) -> np.dtype:
    if units == "s" and dtype.kind == "f" and not name.startswith("timeline/"):
        return np.dtype(np.float32)
    return dtype


def attr_value(value):
    """A root attribute as stored: dicts, lists and tuples as JSON strings (both writers)."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list, tuple)) else value


def storable(array) -> np.ndarray:
    """An array as h5py stores it: numpy unicode strings become HDF5 variable-length strings (both writers)."""
    array = np.asarray(array)
    return array.astype(h5py.string_dtype()) if array.dtype.kind == "U" else array


def _growing(name: str) -> bool:
    return any(name == g or (g.endswith("/") and name.startswith(g)) for g in GROWING)


def scale_values(dim: str, lo: int, hi: int) -> np.ndarray:
    """Coordinates lo..hi-1 of dimension ``dim``: step and round numbers count from 1, indices from 0."""
    return np.arange(lo, hi, dtype=np.int64) + (1 if dim in ROW_DIMENSIONS else 0)


def attach_dimensions(ds: h5py.Dataset, dims: tuple[str, ...], holder: h5py.Group, growing: bool) -> None:
    """Name each axis of ``ds`` and attach the dimension scale of that name in ``holder`` (created here at first
    use; ``growing``: resizable, as the dataset's first axis is). A scale whose length differs is not attached."""
    for axis, dim in enumerate(dims):
        ds.dims[axis].label = dim
        if dim not in holder:
            n = ds.shape[axis]
            maxshape = (None,) if growing and axis == 0 else None
            holder.create_dataset(dim, data=scale_values(dim, 0, n), maxshape=maxshape).make_scale(dim)
        if holder[dim].shape[0] == ds.shape[axis]:
            ds.dims[axis].attach_scale(holder[dim])


def scale_holder(f: h5py.File, name: str) -> h5py.Group:
    """Where a dataset's scales live: the root, except micro's, whose sizes and sample counts differ per
    implementation (their own group)."""
    return f[name].parent if name.startswith("micro/") else f


PER_RANK_ATTRIBUTES = ("roles", "hosts", "nodes")  # root attributes with one entry per rank


class Appender:
    """Rank 0's results file. ``ranks``: rows of every row series are (ranks, n, *inner) blocks; ``unit``:
    ``step`` or ``round``; ``rows_per_flush`` sizes the chunks so that a flush writes whole chunks."""

    def __init__(
        self, path: str, ranks: int, unit: str, rows_per_flush: int, compression: str = "none", *, regrown=False
    ):
        self.path, self.ranks, self.unit = path, ranks, unit
        self.regrown = regrown  # the rank axis may grow on a resume (fedavg on more ranks); unwritten floats read NaN
        self.rows_per_flush = max(1, rows_per_flush)
        self.compression = None if compression == "none" else compression
        self.f: h5py.File | None = None
        self.rows = 0  # rows in the file
        self.series: list[str] = []  # the row series, in the file
        self.created = False
        self.lengths: dict[str, int] = {}  # entries of each growing dataset in the file (a checkpoint records them)

    def resume(self, rows: int, lengths: dict, ranks: int | None = None) -> None:
        """Reopen a file a stopped run wrote and cut it back to a checkpoint: every row series and the row scale
        to ``rows`` rows, each growing dataset to its length in ``lengths`` (what followed the checkpoint is
        dropped); then append from there. Done before SWMR mode, which allows no shrinking. ``ranks``: the
        resumed run's, where it may differ (fedavg): the rank axis grows to it (rows a segment's ranks did not
        write read NaN); with fewer ranks the axis stays, the ranks past them get no new rows."""
        try:
            self.f = h5py.File(self.path, "a", libver="latest")
        except OSError:  # a writer killed outright left the file marked as open for writing
            clear_write_flags(self.path)
            self.f = h5py.File(self.path, "a", libver="latest")
        self.created, self.rows = True, rows
        self.ranks = max(ranks or 0, self.f["rank"].shape[0])
        if self.ranks > self.f["rank"].shape[0]:  # first: a file it cannot grow is refused before any change
            self._grow_ranks(self.ranks)
        self.f[self.unit].resize((rows,))
        self.series = []
        for name, ds in self._datasets():
            if ds.ndim >= 2 and ds.dims[1].label == self.unit:
                ds.resize(rows, axis=1)
                self.series.append(name)
            elif name in lengths:
                ds.resize(lengths[name], axis=0)
                self.f[ds.dims[0].label].resize((lengths[name],))
        self.lengths = dict(lengths)
        self.f.swmr_mode = True

    def rows_of(self, names: list[str], rows: list[int]) -> list[dict[str, np.ndarray]]:
        """Per rank r, the first ``rows[r]`` rows of each row series in ``names`` (memory names) the file holds:
        what a resumed decoupled run puts back into each rank's Recorder."""
        found = [{} for _ in rows]
        for name in names:
            stored = schema.file_name(name)
            if stored in self.f:
                ds = self.f[stored]
                for rank, n in enumerate(rows):
                    found[rank][name] = ds[rank, :n]
        return found

    def _datasets(self) -> list:
        found = []
        self.f.visititems(lambda name, obj: found.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
        return found

    # ---- one flush ---------------------------------------------------------------------------------------
    def write(self, attrs: dict, rows: dict, first_row: int, datasets: dict, ranks: slice | None = None) -> None:
        """``rows``: name -> ((ranks, n, *inner) block, units), written to rows [first_row, first_row + n) of the
        ranks ``ranks`` (all by default); ``datasets``: name -> (array, units), the rest (see GROWING); ``attrs``:
        root attributes (dicts and lists as JSON). Then the file is flushed to disk."""
        if self.f is None and self.created:  # closed after an earlier write: go on appending
            self.f = h5py.File(self.path, "a", libver="latest")
            self.f.swmr_mode = True
        elif self.f is None:
            self._create(rows, datasets)
        self._ensure(rows, datasets)
        n = max((block.shape[1] for block, _ in rows.values()), default=0)
        if first_row + n > self.rows:
            self._grow(first_row + n)
        for name, (block, _) in rows.items():
            rows_of = ranks if ranks is not None else slice(0, block.shape[0])  # a resumed fedavg: fewer ranks
            self.f[schema.file_name(name)][rows_of, first_row : first_row + block.shape[1]] = block
        for name, (array, _) in datasets.items():
            self._put(*schema.to_file(name, storable(array)))
        for key, value in attrs.items():
            self.f.attrs[key] = attr_value(self._all_ranks(key, value))
        self.f.flush()

    def _all_ranks(self, key: str, value):
        """A per-rank root attribute (roles, hosts, nodes) for every rank of the file: a fedavg run resumed on
        fewer ranks keeps the earlier segments' entries for the ranks it lacks (their rows are in the file)."""
        if key not in PER_RANK_ATTRIBUTES or not isinstance(value, list) or len(value) >= self.ranks:
            return value
        before = json.loads(self.f.attrs.get(key, "[]"))
        return value + before[len(value) : self.ranks]

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None

    # ---- layout ------------------------------------------------------------------------------------------
    def _create(self, rows: dict, datasets: dict) -> None:
        self.f = h5py.File(self.path, "w", libver="latest")
        self.created = True
        self.f.attrs["schema_version"] = SCHEMA_VERSION
        growing_ranks = (None,) if self.regrown else None
        self.f.create_dataset("rank", data=scale_values("rank", 0, self.ranks), maxshape=growing_ranks)
        self.f["rank"].make_scale("rank")
        self.f.create_dataset(self.unit, data=scale_values(self.unit, 0, 0), maxshape=(None,)).make_scale(self.unit)
        self._ensure(rows, datasets)
        self.f.swmr_mode = True

    def _ensure(self, rows: dict, datasets: dict) -> None:
        """Create what this flush brings for the first time (all at the first flush, in practice; the layer scale,
        from ``layers/name``, before the series that use it)."""
        for name, (array, units) in datasets.items():
            if schema.file_name(name) not in self.f:
                self._create_other(name, storable(array), units)
        for name, (block, units) in rows.items():
            if schema.file_name(name) not in self.f:
                self._create_series(name, block, units)

    def _create_series(self, name: str, block: np.ndarray, units: str) -> None:
        inner = block.shape[2:]
        dtype = _stored_dtype(name, units, block.dtype)
        per_rank = self.rows_per_flush * int(np.prod(inner, dtype=np.int64)) * dtype.itemsize
        chunk_ranks = int(min(self.ranks, max(1, CHUNK_BYTES // max(per_rank, 1))))
        ds = self.f.create_dataset(
            schema.file_name(name),
            shape=(self.ranks, self.rows, *inner),
            maxshape=(None if self.regrown else self.ranks, None, *inner),
            chunks=(chunk_ranks, self.rows_per_flush, *inner),
            dtype=dtype,
            compression=self.compression,
            fillvalue=np.nan if self.regrown and dtype.kind == "f" else None,
        )
        ds.attrs["units"] = units
        self.series.append(ds.name.lstrip("/"))
        attach_dimensions(ds, schema.dimensions(name, ds.ndim, self.unit, row_series=True), self.f, growing=False)

    def _create_other(self, name: str, array: np.ndarray, units: str) -> None:
        stored = schema.file_name(name)
        growing = _growing(name)
        if growing:
            shape = (0, *array.shape[1:])
            ds = self.f.create_dataset(stored, shape=shape, maxshape=(None, *array.shape[1:]), dtype=array.dtype)
        elif self.regrown and name in schema.PER_RANK:  # one value per rank: the rank axis may grow on a resume
            ds = self.f.create_dataset(stored, data=array, maxshape=(None, *array.shape[1:]))
        else:
            ds = self.f.create_dataset(stored, data=array)
        ds.attrs["units"] = units
        dims = schema.dimensions(name, ds.ndim, self.unit, row_series=False)
        attach_dimensions(ds, dims, scale_holder(self.f, stored), growing)

    def _grow(self, rows: int) -> None:
        """Every row series and the row scale to ``rows`` rows (new rows read as zero until written)."""
        scale = self.f[self.unit]
        scale.resize((rows,))
        scale[self.rows : rows] = scale_values(self.unit, self.rows, rows)
        for name in self.series:
            self.f[name].resize(rows, axis=1)
        self.rows = rows

    def _grow_ranks(self, ranks: int) -> None:
        """The rank axis of every row series and the rank scale to ``ranks`` (a file written with ``regrown``)."""
        scale = self.f["rank"]
        if scale.maxshape[0] is not None:
            raise ValueError(f"its rank axis is fixed at {scale.shape[0]} (written before resumes on more ranks)")
        old = scale.shape[0]
        scale.resize((ranks,))
        scale[old:] = scale_values("rank", old, ranks)
        for _, ds in self._datasets():
            if ds.ndim >= 1 and ds.dims[0].label == "rank" and ds.name != "/rank":
                ds.resize(ranks, axis=0)

    def _put(self, name: str, array: np.ndarray) -> None:
        ds = self.f[name]
        if _growing(name):
            old = ds.shape[0]
            if array.shape[0] > old:
                ds.resize(array.shape[0], axis=0)
                ds[old:] = array[old:]
                self._grow_scale(ds.dims[0].label, array.shape[0])
            self.lengths[name] = max(old, array.shape[0])
        elif ds.shape == array.shape:
            ds[...] = array
        elif self.regrown and ds.dims[0].label == "rank" and ds.shape[1:] == array.shape[1:]:
            if array.shape[0] > ds.shape[0]:
                ds.resize(array.shape[0], axis=0)
            ds[: array.shape[0]] = array  # a resumed fedavg on fewer ranks: the others' values stay
        else:  # a fixed dataset whose size changed (not expected): replace it (SWMR allows no shape change)
            raise ValueError(f"{name}: shape {array.shape} differs from the file's {ds.shape}")

    def _grow_scale(self, dim: str, n: int) -> None:
        """A record dimension's scale (evaluation, participation, update) to ``n`` entries, attached to its
        datasets once they all have them."""
        scale = self.f[dim]
        old = scale.shape[0]
        if n > old:
            scale.resize((n,))
            scale[old:] = scale_values(dim, old, n)

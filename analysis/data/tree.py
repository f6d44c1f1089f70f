"""Results as labelled arrays for xarray users: ``to_xarray(path)``, an ``xarray.DataTree`` whose groups are the
file's (``timing``, ``metrics``, ``fedavg/clients``...), whose variables have named dimensions (``rank``, ``step``
or ``round``, ``layer``, ``evaluation``...) and whose ``.sel(step=5)`` selects step 5 (numbered from 1).

A schema 3 file is opened lazily through h5netcdf (nothing is read until asked for): it is a valid netCDF-4 file
(every dataset has dimension scales, none is named like a dimension: :mod:`analysis.data.schema`). Variables keep the
file's names, so the whole-step time is ``tree["timing"]["total"]`` (``timing/step`` in :mod:`analysis.data.load`).
Files of schemas 1 and 2 are converted in memory, with the same names, dimensions and numbers. xarray and h5netcdf
are the optional extra ``pip install '.[analysis]'``.
"""

from __future__ import annotations

import numpy as np

from analysis.data import schema
from analysis.data.facts import row_unit
from analysis.data.load import ResultsError, load


def to_xarray(path):
    """The run in ``path`` as an ``xarray.DataTree``; the root attributes as stored (dicts and lists as JSON
    strings: ``analysis.data.load.load(path).attrs`` has them decoded). A file whose writer is running or was killed
    opens in SWMR read mode, as ``analysis.data.load`` opens it, with every flushed row."""
    import xarray as xr

    run = load(path)
    if int(run.attrs["schema_version"]) >= 3:
        try:
            return xr.open_datatree(str(path), engine="h5netcdf")
        except OSError as exc:
            if "already open for write" not in str(exc):
                raise ResultsError(f"{path}: not readable as netCDF ({exc})") from None
        return xr.open_datatree(str(path), engine="h5netcdf", driver_kwds={"swmr": True})
    return _converted(run, xr)


def _converted(run, xr):
    """A schema 1 or 2 file as schema 3 would store it."""
    unit = row_unit(run)
    groups: dict[str, dict] = {}
    for name in run.data:
        array = np.asarray(run.data[name])
        dims = schema.array_dimensions(name, array.ndim, unit)
        group, _, leaf = schema.file_name(name).rpartition("/")
        var = xr.Variable(dims, array, {"units": run.units.get(name, "")})
        groups.setdefault(group, {})[leaf] = var
    rows = run.data["timing/step"].shape[1] if "timing/step" in run.data else 0
    coords = {"rank": np.arange(int(run.attrs.get("world_size", 0)))} if "timing/step" in run.data else {}
    if rows:
        coords[unit] = np.arange(1, rows + 1)
    tree = {"/": xr.Dataset(coords=coords, attrs=_attrs(run))}
    tree |= {f"/{g}": xr.Dataset(v) for g, v in groups.items()}
    return xr.DataTree.from_dict(tree)


def _attrs(run) -> dict:
    import json

    return {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in run.attrs.items() if v is not None}

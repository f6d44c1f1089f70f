"""Read a syncbench results file into plain numpy arrays and dicts, checking the schema version."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

SUPPORTED_SCHEMA = 1


class ResultsError(Exception):
    """A file that is not a readable syncbench results file of a supported schema; names the file."""


@dataclass
class RunResults:
    path: str
    attrs: dict
    data: dict[str, np.ndarray] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> dict:
        return self.attrs["config"]

    @property
    def strategy(self) -> str:
        return self.attrs["strategy"]

    @property
    def world_size(self) -> int:
        return int(self.attrs["world_size"])


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


def load(path: str | Path) -> RunResults:
    path = str(path)
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        attrs = {k: _decode(v) for k, v in f.attrs.items()}
        version = attrs.get("schema_version")
        if version != SUPPORTED_SCHEMA:
            raise ResultsError(f"{path}: schema version {version!r}, this analysis reads {SUPPORTED_SCHEMA}")
        out = RunResults(path, attrs)

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                arr = obj[()]
                if obj.dtype.kind == "O":
                    arr = np.array([a.decode() if isinstance(a, bytes) else a for a in arr])
                out.data[name] = arr
                out.units[name] = _decode(obj.attrs.get("units", ""))

        f.visititems(visit)
    return out

"""What the end-of-run summary reads: the results file's row series, each summed over its layers.

The summary is computed from the file the run wrote (so it says what the file says), and rank 0 holds no rows
of its own any more (:mod:`bench.measure.appender`). A per-layer series is read a block of rows at a time and summed
over its layers, so reading it back costs (ranks x rows) values, not (ranks x rows x layers).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from analysis.load import open_results

BLOCK_ROWS = 4096


class LayerTotals(Mapping):
    """Series name -> (ranks, rows) float64 array (per-layer series summed over layers), read on first access."""

    def __init__(self, path: str):
        self._path = path
        self._cache: dict[str, np.ndarray] = {}
        with open_results(path) as f:
            self._names = [n for n in _walk(f) if f[n].ndim >= 2]

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._cache:
            if name not in self._names:
                raise KeyError(name)
            with open_results(self._path) as f:
                ds = f[name]
                out = np.empty(ds.shape[:2], dtype=np.float64)
                for lo in range(0, ds.shape[1], BLOCK_ROWS):
                    block = ds[:, lo : lo + BLOCK_ROWS].astype(np.float64)
                    out[:, lo : lo + block.shape[1]] = block.reshape(*block.shape[:2], -1).sum(axis=2)
                self._cache[name] = out
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _walk(f) -> list[str]:
    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if hasattr(obj, "shape") else None)
    return names

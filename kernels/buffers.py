"""Reusable scratch buffers for kernels: one per dtype, grown on demand, so the per-layer calls of every step
allocate nothing."""

from __future__ import annotations

import numpy as np


class ScratchPool:
    def __init__(self):
        self._buffers: dict[np.dtype, np.ndarray] = {}

    def get(self, dtype: np.dtype, count: int) -> np.ndarray:
        """A contiguous buffer of ``count`` elements of ``dtype`` (contents undefined)."""
        buf = self._buffers.get(dtype)
        if buf is None or buf.size < count:
            buf = self._buffers[dtype] = np.empty(max(count, 1), dtype=dtype)
        return buf[:count]

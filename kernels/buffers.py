"""Reusable scratch buffers for kernels: one per dtype (and kind of buffer), grown on demand, so the per-layer calls
of every step allocate nothing.

A kernel buffer is a contiguous 1-D numpy array, or an object that behaves as one for the kernels (``size``,
``nbytes``, ``dtype``, slicing, ``np.add(a, b, out=a)``) and makes its own scratch (``scratch(count)``): a torch
tensor on a GPU handed to a CUDA-aware MPI (``bench.comm.device_buffers.TensorBuffer``)."""

from __future__ import annotations

import numpy as np


class ScratchPool:
    def __init__(self):
        self._buffers: dict[np.dtype, np.ndarray] = {}
        self._others: dict[tuple, object] = {}

    def get(self, dtype: np.dtype, count: int) -> np.ndarray:
        """A contiguous buffer of ``count`` elements of ``dtype`` (contents undefined)."""
        buf = self._buffers.get(dtype)
        if buf is None or buf.size < count:
            buf = self._buffers[dtype] = np.empty(max(count, 1), dtype=dtype)
        return buf[:count]

    def like(self, buf, count: int):
        """Scratch of ``count`` elements of the same kind as ``buf`` (a numpy array, or its own kind)."""
        if isinstance(buf, np.ndarray):
            return self.get(buf.dtype, count)
        key = (type(buf), buf.dtype, str(getattr(buf, "device", "")))
        held = self._others.get(key)
        if held is None or held.size < count:
            held = self._others[key] = buf.scratch(count)
        return held[:count]


def empty_like(buf, count: int):
    """A new buffer of ``count`` elements of the same kind as ``buf`` (contents undefined): for a kernel call
    that may be one of several in flight, so it cannot share a pool's scratch."""
    if isinstance(buf, np.ndarray):
        return np.empty(count, dtype=buf.dtype)
    return buf.scratch(count)[:count]


def check_buffer(buf) -> None:
    """A buffer the kernels take: a contiguous 1-D numpy array, or an object that makes its own scratch."""
    if isinstance(buf, np.ndarray):
        if buf.ndim == 1 and buf.flags.c_contiguous:
            return
    elif hasattr(buf, "scratch") and buf.ndim == 1:
        return
    raise TypeError("all-reduce kernels need a contiguous 1-D numpy array")

"""A torch tensor handed to the suite's kernels and to MPI where it lives (``--gpu-path device``).

The kernels (:mod:`kernels`) are written for 1-D numpy arrays: they read ``size``, ``nbytes``, ``itemsize`` and
``dtype``, slice, add with ``np.add(a, b, out=a)``, and ask for scratch of the same kind. :class:`TensorBuffer`
answers those on a tensor (the addition through numpy's ``__array_ufunc__`` protocol, computed by torch on the
tensor's device) and hands mpi4py the memory itself through DLPack (and, on a GPU, the CUDA array interface), so a
CUDA-aware MPI reads and writes device memory with no host copy. On CPU tensors the same path runs, which is how
it is tested without a GPU: the sums are IEEE float32 additions of the same operands in the same order, so the
results are bit-identical to the numpy path's. On a GPU every addition is waited for before the kernel's next
message (MPI reads device memory without regard to CUDA streams).
"""

from __future__ import annotations

import numpy as np
import torch


class TensorBuffer:
    """A contiguous 1-D tensor seen as a numpy-like buffer (see the module docstring)."""

    ndim = 1
    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor):
        if tensor.dim() != 1 or not tensor.is_contiguous():
            raise TypeError("a kernel buffer is a contiguous 1-D tensor")
        self.tensor = tensor

    @property
    def size(self) -> int:
        return self.tensor.numel()

    @property
    def itemsize(self) -> int:
        return self.tensor.element_size()

    @property
    def nbytes(self) -> int:
        return self.tensor.numel() * self.tensor.element_size()

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(str(self.tensor.dtype).removeprefix("torch."))

    def __len__(self) -> int:
        return self.tensor.numel()

    def __getitem__(self, index: slice) -> TensorBuffer:
        return TensorBuffer(self.tensor[index])

    def __dlpack__(self, *args, **kwargs):
        return self.tensor.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.tensor.__dlpack_device__()

    @property
    def __cuda_array_interface__(self) -> dict:
        return self.tensor.__cuda_array_interface__  # AttributeError on a CPU tensor: MPI takes DLPack then

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        """``np.add(a, b, out=c)`` on tensor buffers: ``torch.add`` on their device, finished before it returns.
        Nothing else is supported. On a GPU the add is queued on a stream, and MPI does not wait for streams
        (mpi4py's CUDA-aware examples synchronise before every call): the kernels send the chunk just summed and
        receive into the scratch just read, so the stream is synchronised here."""
        if ufunc is not np.add or method != "__call__" or out is None or kwargs:
            return NotImplemented
        a, b = (x.tensor for x in inputs)
        target = out[0].tensor
        torch.add(a, b, out=target)
        if target.is_cuda:
            torch.cuda.current_stream(target.device).synchronize()
        return out[0]

    def scratch(self, count: int) -> TensorBuffer:
        """A new buffer of ``count`` elements of this one's type, on its device (contents undefined)."""
        return TensorBuffer(torch.empty(max(count, 1), dtype=self.tensor.dtype, device=self.tensor.device))

    def numpy(self) -> np.ndarray:
        """A host copy (tests, messages)."""
        return self.tensor.detach().cpu().numpy()

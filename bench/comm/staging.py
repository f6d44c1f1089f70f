"""Buffers for MPI: each layer's (or bucket's) flattened gradients or parameters in one contiguous float32
buffer, in host memory (or, for a CUDA-aware MPI, ``--gpu-path device``, in the model's device memory); the time
spent copying into and out of them (packing, :data:`bench.measure.clocks.PACKING`) is not communication."""

from __future__ import annotations

import numpy as np
import torch

from bench.comm.device_buffers import TensorBuffer
from bench.measure.clocks import PACKING
from bench.workload.models import Layer
from kernels.reference import bucket_layers


class HostStaging:
    """Contiguous host buffers holding each layer's flattened gradients (or parameters) for MPI.

    The groups' buffers are consecutive views of one allocation (``flat``), so a whole model packed group by group
    is already one contiguous vector (no concatenation before folding it). On CPU the numpy buffer shares memory
    with a torch tensor, so packing is one ``torch.cat(out=...)``. On
    CUDA the torch tensor is pinned host memory and the copy is a device-to-host transfer (MPI here is not
    assumed CUDA-aware). ``in_place`` (``--gpu-path device``): the buffers are on ``device`` and the kernels get
    them as :class:`bench.comm.device_buffers.TensorBuffer` s, which MPI reads where they are.
    """

    def __init__(self, layers: list[Layer], device: torch.device, groups: list[tuple[int, ...]] | None = None,
                 in_place: bool = False):  # fmt: skip
        self.layers, self.device, self.in_place = layers, device, in_place
        self.groups = groups or [(layer.index,) for layer in layers]
        sizes = [sum(layers[i].numel for i in g) for g in self.groups]
        if in_place:
            whole = torch.empty(sum(sizes), dtype=torch.float32, device=device)
        else:
            whole = torch.empty(sum(sizes), dtype=torch.float32, pin_memory=device.type == "cuda")
        self.host: list[torch.Tensor] = list(torch.split(whole, sizes))  # views: packing a group fills ``flat``
        if in_place:
            self.flat = TensorBuffer(whole)
            self.numpy = [TensorBuffer(t) for t in self.host]
        else:
            self.flat: np.ndarray = whole.numpy()  # every group's buffer, back to back in group order (FedAvg folds)
            self.numpy: list[np.ndarray] = [t.numpy() for t in self.host]

    def tensors(self, g: int, grads: bool) -> list[torch.Tensor]:
        """Group g's gradients (``grads``) or parameters, flattened views, in packing order."""
        return self._tensors(self.groups[g], grads)

    def _tensors(self, group: tuple[int, ...], grads: bool) -> list[torch.Tensor]:
        out = []
        for i in group:
            for p in self.layers[i].params:
                t = p.grad if grads else p.data
                out.append(t.reshape(-1))
        return out

    @PACKING.timed
    def pack(self, g: int, grads: bool = True) -> np.ndarray:
        parts = self._tensors(self.groups[g], grads)
        if parts and self.host[g].device == parts[0].device:
            torch.cat(parts, out=self.host[g])
        else:
            self.host[g].copy_(torch.cat(parts), non_blocking=False)
        return self.numpy[g]

    @PACKING.timed
    def scale(self, g: int, factor: float) -> None:
        """Multiply the host buffer of group ``g`` in place (a sum into a mean)."""
        self.host[g].mul_(factor)

    @PACKING.timed
    def unpack(self, g: int, grads: bool = True) -> None:
        self.scatter(g, self.host[g], grads)

    def scatter(self, g: int, flat: torch.Tensor, grads: bool = True) -> None:
        """Group g's tensors (gradients or parameters) set from ``flat``, one group's values back to back in
        packing order (its host buffer, or a device copy of it)."""
        off = 0
        for t in self._tensors(self.groups[g], grads):
            n = t.numel()
            t.copy_(flat[off : off + n])
            off += n


def bucket_groups(layers: list[Layer], bucket_mb: float) -> list[tuple[int, ...]]:
    """Group layers, in backward order (last layer first), into buckets of at least ``bucket_mb`` MiB, like
    DDP's gradient buckets; ``bucket_mb == 0`` gives one group per layer (:func:`kernels.reference.bucket_layers`)."""
    return bucket_layers([layer.bytes for layer in layers], bucket_mb)

"""The Strategy interface used by the schedules in :mod:`bench.run`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from mpi4py import MPI

from bench.workload.models import Layer
from kernels.topology import Topology


@dataclass
class Exchange:
    """One timed unit of communication: ``run()`` moves the data of ``layers`` and returns the bytes it moved
    (sent; received for a parameter-server pull). When it covers several layers (a bucket) the driver shares its
    time among them by bytes. ``series`` names a Recorder series that also gets the time: per layer when the
    exchange has layers (e.g. ``ps/push``), a scalar per step when it has none (e.g. ``timing/wait``, for waiting
    on a reply header, which is no layer's communication)."""

    layers: tuple[int, ...]
    run: Callable[[], int]
    series: str | None = None


class Strategy:
    name = "base"
    needs_full_batches = True  # every computing rank's partition must hold one --batch-size batch

    def __init__(self, cfg, comm: MPI.Comm, model: torch.nn.Module, layers: list[Layer], device: torch.device):
        self.cfg = cfg
        self.world = comm
        self.model = model
        self.layers = layers
        self.device = device
        self.topology = self.make_topology(comm.rank, comm.size)
        self.comm = comm.Dup()  # strategy traffic never mixes with set-up or gather traffic

    # ---- layout -------------------------------------------------------------------------------------
    def make_topology(self, rank: int, size: int) -> Topology:
        raise NotImplementedError

    @property
    def computes(self) -> bool:
        """Does this rank run forward/backward passes?"""
        return True

    @property
    def compute_ranks(self) -> int:
        """How many ranks compute gradients (the data is partitioned over these)."""
        return self.world.size

    @property
    def data_part(self) -> int:
        """Which data partition this rank trains on."""
        return self.world.rank

    # ---- hooks around one step ----------------------------------------------------------------------
    def before_step(self, step: int) -> list[Exchange]:
        """Communication before compute (e.g. pulling parameters). Default: none."""
        return []

    def after_backward(self, step: int) -> list[Exchange]:
        """Communication of gradients. Must be provided."""
        raise NotImplementedError

    def barrier_for_wait(self, step: int) -> MPI.Comm | None:
        """Communicator whose barrier, just before this step's communication, measures rank skew as wait
        (synchronous strategies); None: no barrier this step."""
        return self.comm

    def apply_update(self, step: int) -> None:
        """Apply the optimizer step."""
        raise NotImplementedError

    def after_update(self, step: int) -> list[Exchange]:
        """Communication after the update (e.g. parameter averaging). Default: none."""
        return []

    def end_step(self, step: int) -> None:
        """After the step's last exchange (e.g. record what the replies said). Default: nothing."""

    @property
    def lockstep(self) -> bool:
        """True: every rank takes the same steps and can join collectives at step boundaries (the driver's
        loop with stop agreement and periodic flushes). False: see :mod:`bench.run.decoupled`."""
        return True

    def gather_datasets(self) -> dict:
        """Collective over the world: extra datasets for the results file, returned on rank 0."""
        return {}

    def declare(self, rec) -> None:
        """Add strategy-specific series to the Recorder (same names and order on every rank)."""

    def stop_comm(self) -> MPI.Comm:
        """Ranks that must agree to stop early (on a signal) at the same step."""
        return self.comm

    def finish(self) -> None:
        """Orderly shutdown (stop messages, outstanding requests)."""

    def eval_rank(self) -> int:
        """World rank whose model is evaluated (it must hold the current global model)."""
        return 0

    def describe(self) -> dict:
        """Strategy-specific attributes for the results file."""
        return {"topology": self.topology.describe()}


class PackingClock:
    """Seconds spent copying between model tensors and host buffers (pack, unpack, scaling), summed over every
    :class:`HostStaging` of the process. The driver reads it around each exchange, so that this local copying is
    recorded as its own phase (``timing/pack``) and not as communication: a 1-rank ``ring`` moves no bytes and
    must report no communication time."""

    def __init__(self):
        self.seconds = 0.0

    def timed(self, fn):
        def run(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t

        return run


PACKING = PackingClock()


class HostStaging:
    """Contiguous host buffers holding each layer's flattened gradients (or parameters) for MPI.

    On CPU the numpy buffer shares memory with a torch tensor, so packing is one ``torch.cat(out=...)``. On
    CUDA the torch tensor is pinned host memory and the copy is a device-to-host transfer (MPI here is not
    assumed CUDA-aware).
    """

    def __init__(self, layers: list[Layer], device: torch.device, groups: list[tuple[int, ...]] | None = None):
        self.layers = layers
        self.groups = groups or [(layer.index,) for layer in layers]
        pin = device.type == "cuda"
        self.host: list[torch.Tensor] = []
        self.numpy: list[np.ndarray] = []
        for g in self.groups:
            n = sum(layers[i].numel for i in g)
            t = torch.empty(n, dtype=torch.float32, pin_memory=pin)
            self.host.append(t)
            self.numpy.append(t.numpy())

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
        if self.host[g].device.type == "cpu" and parts and parts[0].device.type == "cpu":
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
        src = self.host[g]
        off = 0
        for t in self._tensors(self.groups[g], grads):
            n = t.numel()
            t.copy_(src[off : off + n])
            off += n


def bucket_groups(layers: list[Layer], bucket_mb: float) -> list[tuple[int, ...]]:
    """Group layers, in backward order (last layer first), into buckets of at least ``bucket_mb`` MiB, like
    DDP's gradient buckets; ``bucket_mb == 0`` gives one group per layer."""
    order = [layer.index for layer in reversed(layers)]
    if bucket_mb <= 0:
        return [(i,) for i in order]
    limit = bucket_mb * 2**20
    groups, current, size = [], [], 0
    for i in order:
        current.append(i)
        size += layers[i].bytes
        if size >= limit:
            groups.append(tuple(current))
            current, size = [], 0
    if current:
        groups.append(tuple(current))
    return groups

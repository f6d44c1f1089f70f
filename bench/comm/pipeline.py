"""Buckets in flight (``--buckets-in-flight N``): the copies of the staged buckets between the model's device and
the buffers MPI reads are issued ahead and awaited late, so that on a GPU bucket k+1 crosses to the host while
bucket k is being reduced and bucket k-1 crosses back.

The schedule (:class:`BucketPipeline`) is the same on every device; what a copy is differs:

- :class:`HostCopies` (CPU, ``--gpu-path host``): the model's memory is the host's, so a copy is done when it is
  issued and every wait returns at once. The pipeline's order and results are tested here, on CPU tensors.
- :class:`CudaCopies` (CUDA, ``--gpu-path host``): each bucket is gathered into a device buffer and copied into its
  pinned host buffer on a copy stream, its completion an event; the way back too, and the computing stream waits
  for the copy stream (no device-wide synchronisation) before the optimizer reads what came back.
- :class:`InPlaceCopies` (``--gpu-path device``): MPI reads the device buffers themselves (CUDA-aware MPI), so the
  only "copy" is gathering the bucket on the device, and the wait is for that to finish before MPI reads it.

Every buffer is allocated once, at set-up (the host buffers by :class:`bench.comm.staging.HostStaging`); bucket g
always uses buffer g, so a buffer is rewritten only by the next step's copy of the same bucket, which the copy
stream orders after this step's copy back.
"""

from __future__ import annotations

import torch

from bench.measure.clocks import PACKING

DEFAULT_IN_FLIGHT = 2


class HostCopies:
    """Copies that are done when issued (the model lives in host memory)."""

    def __init__(self, staging):
        self.staging = staging

    def to_host(self, g: int, grads: bool) -> None:
        self.staging.pack(g, grads=grads)

    def host_ready(self, g: int) -> None:
        """Block until bucket g's buffer holds what :meth:`to_host` copied (here it already does)."""

    def to_device(self, g: int, grads: bool) -> None:
        self.staging.unpack(g, grads=grads)

    def device_ready(self) -> None:
        """Make the training thread's next use of the model wait for every copy back (here nothing is pending)."""


class InPlaceCopies(HostCopies):
    """``--gpu-path device``: the staging's buffers are device memory that MPI reads directly; packing gathers the
    bucket there, on the stream of the thread that packs, and MPI may read it only once that stream has run it."""

    def __init__(self, staging, device: torch.device):
        super().__init__(staging)
        self.cuda = device.type == "cuda"
        self._streams: set = set()

    def host_ready(self, g: int) -> None:
        if self.cuda:
            PACKING.timed(torch.cuda.current_stream().synchronize)()

    def to_device(self, g: int, grads: bool) -> None:
        super().to_device(g, grads)
        if self.cuda:
            self._streams.add(torch.cuda.current_stream())

    def device_ready(self) -> None:
        if self.cuda:  # unpacked on a communication thread's stream: the computing stream waits for it
            default = torch.cuda.default_stream(self.staging.device)
            for stream in self._streams:
                default.wait_stream(stream)
            self._streams.clear()


class CudaCopies(HostCopies):
    """Device-to-host and back on a copy stream of its own, into and out of the pinned host buffers, through one
    device buffer per bucket (gathering a bucket's tensors there is one kernel; the copy to the host one transfer)."""

    def __init__(self, staging, device: torch.device):
        super().__init__(staging)
        self.device = device
        self.stream = torch.cuda.Stream(device)
        sizes = [t.numel() for t in staging.host]
        self.device_buffers = list(torch.split(torch.empty(sum(sizes), device=device), sizes))
        self.copied = [torch.cuda.Event() for _ in sizes]

    @PACKING.timed
    def to_host(self, g: int, grads: bool) -> None:
        self.stream.wait_stream(torch.cuda.current_stream(self.device))  # what the caller's stream computed
        with torch.cuda.stream(self.stream):
            torch.cat(self.staging.tensors(g, grads), out=self.device_buffers[g])
            self.staging.host[g].copy_(self.device_buffers[g], non_blocking=True)
            self.copied[g].record(self.stream)

    @PACKING.timed
    def host_ready(self, g: int) -> None:
        self.copied[g].synchronize()

    @PACKING.timed
    def to_device(self, g: int, grads: bool) -> None:
        with torch.cuda.stream(self.stream):
            whole = self.device_buffers[g]
            whole.copy_(self.staging.host[g], non_blocking=True)
            self.staging.scatter(g, whole, grads)

    @PACKING.timed
    def device_ready(self) -> None:
        """The computing stream waits for the copies back, and so does this thread: the time until the buckets are
        back in the model is packing (else it would show up in whatever the training thread waits for next)."""
        torch.cuda.default_stream(self.device).wait_stream(self.stream)
        self.stream.synchronize()


def make_copies(staging, device: torch.device, in_place: bool = False) -> HostCopies:
    if in_place:
        return InPlaceCopies(staging, device)
    return CudaCopies(staging, device) if device.type == "cuda" else HostCopies(staging)


class BucketPipeline:
    """A step's buckets, taken in ``order``, with up to ``in_flight`` of them copied to (or towards) the host ahead
    of the one being reduced. :meth:`fetch` (bucket g's buffer, ready for MPI) and :meth:`store` (its result back
    to the model) are called once per bucket per step, in ``order``; :meth:`store` of the last bucket makes the
    training thread wait for every copy back. ``ready(h)``: whether bucket h may be copied yet (a bucket of the
    overlapped backward pass whose gradients have not all landed may not); ``before_copy(h)`` runs first (the
    overlap's gate: the copying stream waits for the gradients' event)."""

    def __init__(self, staging, copies: HostCopies, in_flight: int, order: list[int] | None = None):
        if in_flight < 1:
            raise ValueError(f"buckets in flight must be >= 1, got {in_flight}")
        self.staging, self.copies, self.in_flight = staging, copies, in_flight
        self.order = list(range(len(staging.groups))) if order is None else list(order)
        self._position = {g: i for i, g in enumerate(self.order)}
        self._issued = 0  # buckets of ``order`` whose copy to the host was issued this step

    def fetch(self, g: int, grads: bool, ready=None, before_copy=None) -> object:
        """Bucket g's staged buffer, its copy (and those of the next ``in_flight - 1`` ready buckets) issued."""
        position = self._position[g]
        if position == 0:
            self._issued = 0
        while self._issued <= position:  # its own copy (and any skipped before it): the caller waited for it
            self._issue(grads, before_copy)
        while self._issued < min(len(self.order), position + self.in_flight):
            if ready is not None and not ready(self.order[self._issued]):
                break
            self._issue(grads, before_copy)
        self.copies.host_ready(g)
        return self.staging.numpy[g]

    def _issue(self, grads: bool, before_copy) -> None:
        h = self.order[self._issued]
        if before_copy is not None:
            before_copy(h)
        self.copies.to_host(h, grads)
        self._issued += 1

    def store(self, g: int, grads: bool) -> None:
        """Bucket g's buffer (reduced, scaled) back into the model; after the step's last, wait for them all."""
        self.copies.to_device(g, grads)
        if self._position[g] == len(self.order) - 1:
            self.copies.device_ready()

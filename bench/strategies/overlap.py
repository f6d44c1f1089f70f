"""``ring --overlap``: each bucket's gradients are averaged while the rest of the backward pass runs.

Wait-free backpropagation (Zhang et al. 2017, Poseidon) as PyTorch DDP's reducer does it: a hook on every
parameter's gradient accumulation counts its bucket down, and a bucket whose last gradient has landed is ready.
One communication thread per rank all-reduces the buckets strictly in bucket index order, which is backward order
(:func:`bench.comm.staging.bucket_groups`): every rank must launch its buckets in the same order, as DDP
requires, because a bucket's messages are matched by its tag. It runs the very exchange the non-overlapped ring
runs (pack, our ring or recursive-doubling kernel, scale by 1/p, unpack), so the parameters after k steps are
bit-identical with and without overlap. The training thread waits for the last bucket after ``backward()`` and
before the optimizer step, under the step's watchdog deadline (a rank launching buckets in another order hangs
there and the watchdog aborts the job, naming it).

Why a thread and not non-blocking steps advanced from the gradient hooks: our kernels are blocking ``Sendrecv``
loops, and a hook-driven kernel only moves when the next gradient lands, so a bucket would make no progress while
autograd computes one large layer. mpi4py releases the GIL inside MPI calls and numpy inside large additions, so
the thread's copies and sums run beside autograd's C++ work. The thread needs ``MPI_THREAD_MULTIPLE`` (the
watchdog's hang diagnosis may call MPI at the same time); a library that provides less is refused at start.

On CUDA a gradient hook runs when autograd *queues* the gradient's kernels, not when they have run, so a ready
bucket's gradients may still be in the making: :class:`CudaGates` records an event on the computing stream when a
bucket is ready, and the communication thread's own stream waits for that event before its device-to-host copy
(on the default stream the copy would queue behind the whole rest of the backward pass). The hooks schedule is
CPU-only: a hook that waited for the GPU would stop autograd from queueing the next layer's kernels.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import torch
from mpi4py import MPI

from bench.comm.pipeline import BucketPipeline
from bench.comm.staging import HostStaging
from bench.measure.buckets import BucketTiming, byte_shares
from bench.runtime.errors import UsageError
from kernels.ring_allreduce import RingAllreduce
from kernels.stepwise import allreduce_steps


def require_thread_multiple(what: str) -> None:
    provided = MPI.Query_thread()
    if provided < MPI.THREAD_MULTIPLE:
        names = {MPI.THREAD_SINGLE: "SINGLE", MPI.THREAD_FUNNELED: "FUNNELED", MPI.THREAD_SERIALIZED: "SERIALIZED"}
        level = names.get(provided, provided)
        raise UsageError(
            f"{what} needs MPI_THREAD_MULTIPLE, and this MPI library provides MPI_THREAD_{level}"
            " (mpi4py asks for MULTIPLE by default; check MPI's build or the mpi4py.rc.thread_level setting)"
        )


class BucketReadiness:
    """Gradient-ready hooks for one model's buckets (``groups``: tuples of layer indices, in launch order): a
    bucket is ready once every parameter of its layers has its gradient in this step's backward pass. Subclasses
    say what happens then (:meth:`_bucket_ready`) and communicate in ``self._order``."""

    def __init__(self, layers, groups, reversed_order: bool = False):
        self._order = list(range(len(groups)))
        if reversed_order:  # testing aid (--overlap-fault-rank): launch in another order than the peers
            self._order.reverse()
        self._params_per_bucket = [sum(len(layers[i].params) for i in g) for g in groups]
        self._pending = list(self._params_per_bucket)
        self._active = False
        self._timings: list[BucketTiming | None] = [None] * len(groups)
        self._handles = [
            p.register_post_accumulate_grad_hook(self._hook(g))
            for g, group in enumerate(groups)
            for i in group
            for p in layers[i].params
        ]

    def _hook(self, g: int):
        pending = self._pending

        def landed(_param) -> None:
            if self._active:
                pending[g] -= 1
                self._bucket_ready(g, pending[g] == 0)

        return landed

    def _bucket_ready(self, g: int, ready: bool) -> None:
        raise NotImplementedError

    def begin(self) -> None:
        """Before a step's backward: every bucket waits for all its gradients again."""
        self._pending[:] = self._params_per_bucket
        self._active = True

    def close(self) -> None:
        """Between steps, before the buckets are rebuilt (``--freeze``): the hooks come off the parameters."""
        for handle in self._handles:
            handle.remove()
        self._active = False


class CudaGates:
    """Per bucket, the event after which its gradients exist on the GPU (module docstring), and the communication
    thread's stream that waits for it."""

    def __init__(self, device: torch.device, buckets: int):
        self.device = device
        self.stream = torch.cuda.Stream(device)
        self.events: list[torch.cuda.Event | None] = [None] * buckets

    def close(self, g: int) -> None:
        """In the hook that completed bucket g: mark the computing stream's position."""
        event = torch.cuda.Event()
        event.record()
        self.events[g] = event

    def enter_thread(self):
        """The communication thread's context: this device, this stream."""
        torch.cuda.set_device(self.device)
        return torch.cuda.stream(self.stream)

    def wait(self, g: int) -> None:
        self.stream.wait_event(self.events[g])


class OverlappedBuckets(BucketReadiness):
    """The communication thread: ``send(g)`` communicates bucket g there and returns its timing (the ring's
    average, :class:`RingBucketAverage`, or a parameter-server worker's push of a layer)."""

    def __init__(self, layers, groups, send, reversed_order=False, series: str | None = None, device=None):
        require_thread_multiple("--overlap")
        super().__init__(layers, groups, reversed_order)
        self.send, self.series = send, series  # series: a per-layer series that also gets the communication time
        self._gates = CudaGates(device, len(groups)) if device is not None and device.type == "cuda" else None
        self._ready = [threading.Event() for _ in groups]
        if isinstance(send, RingBucketAverage):  # its pipeline copies ahead the buckets whose gradients landed
            send.watch(lambda h: self._ready[h].is_set(), self._gates.wait if self._gates is not None else None)
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name="syncbench-comm", daemon=True)
        self._thread.start()

    def _bucket_ready(self, g: int, ready: bool) -> None:
        if ready:
            if self._gates is not None:
                self._gates.close(g)
            self._ready[g].set()

    def begin(self) -> None:
        self._done.clear()
        super().begin()

    def finish(self) -> list[BucketTiming]:
        """After ``backward()``: wait until every bucket is communicated; their timings."""
        self._done.wait()
        self._active = False
        if self._error is not None:
            raise RuntimeError("the communication thread failed") from self._error
        return list(self._timings)

    def _serve(self) -> None:
        try:
            if self._gates is None:
                self._serve_buckets()
            else:
                with self._gates.enter_thread():
                    self._serve_buckets()
        except Exception as exc:  # noqa: BLE001 - surfaced in the training thread by finish()
            self._error = exc
            self._done.set()

    def close(self) -> None:
        """Between steps (the thread waits for the next step's first bucket): hooks off, the thread ended."""
        super().close()
        self._closing = True
        for ready in self._ready:
            ready.set()
        self._thread.join()

    def _serve_buckets(self) -> None:
        while True:
            for g in self._order:
                self._ready[g].wait()
                if self._closing:
                    return
                self._ready[g].clear()
                if self._gates is not None:
                    self._gates.wait(g)
                self._timings[g] = self.send(g)
            self._done.set()


class RingBucketAverage:
    """The non-overlapped ring's exchange of one bucket (bench.strategies.averaging: pack, sum over the ring, scale
    by 1/p, unpack), split where the overlapped schedules need it and timed in parts. Its copies go through
    ``pipeline``, whose order is the schedule's; :meth:`watch` tells it which buckets may be copied ahead."""

    def __init__(self, staging: HostStaging, allreduce: RingAllreduce, pipeline: BucketPipeline):
        self.staging, self.allreduce, self.pipeline = staging, allreduce, pipeline
        layers = staging.layers
        self.shares = [byte_shares({i: layers[i].bytes for i in g}) for g in staging.groups]
        self._ready, self._before_copy = None, None

    def watch(self, ready, before_copy=None) -> None:
        """``ready(h)``: whether bucket h's gradients have all landed; ``before_copy(h)``: its gate (CUDA)."""
        self._ready, self._before_copy = ready, before_copy

    def pack(self, g: int) -> tuple[np.ndarray, float, float]:
        """(the packed buffer, when packing started, when it ended)."""
        start = time.perf_counter()
        buf = self.pipeline.fetch(g, True, self._ready, self._before_copy)
        return buf, start, time.perf_counter()

    def complete(self, g: int, buf: np.ndarray, start: float, comm_start: float) -> BucketTiming:
        """After the sum: the mean back into the gradients; the bucket's timing."""
        comm_end = time.perf_counter()
        self.staging.scale(g, 1.0 / self.allreduce.topology.ring_size)
        self.pipeline.store(g, True)
        sent = self.allreduce.elements_sent(buf.size, buf.itemsize) * buf.itemsize
        return BucketTiming(self.shares[g], start, comm_start, comm_end, time.perf_counter(), sent)

    def __call__(self, g: int) -> BucketTiming:
        """The whole exchange (``send`` for the communication thread)."""
        buf, start, comm_start = self.pack(g)
        self.allreduce(buf, key=g)
        return self.complete(g, buf, start, comm_start)


class HookDrivenBuckets(BucketReadiness):
    """The same buckets, in the same order, with the same kernel's schedule (:mod:`kernels.stepwise`), advanced on
    the training thread: every gradient hook tests the message step in flight and posts the next, and after
    ``backward()`` :meth:`finish` drives what is left to the end. No thread, so no ``MPI_THREAD_MULTIPLE`` and no
    second core needed; the price is that nothing moves while autograd computes between two hooks."""

    series = None

    def __init__(self, average: RingBucketAverage, reversed_order: bool = False):
        staging = average.staging
        super().__init__(staging.layers, staging.groups, reversed_order)
        self.average = average
        self._ready = [False] * len(staging.groups)
        average.watch(lambda h: self._ready[h])
        self._next, self._current = 0, None

    def _bucket_ready(self, g: int, ready: bool) -> None:
        self._ready[g] = ready
        self._advance(block=False)

    def begin(self) -> None:
        self._ready = [False] * len(self._ready)
        self._next, self._current = 0, None
        super().begin()

    def finish(self) -> list[BucketTiming]:
        self._active = False
        self._advance(block=True)
        return list(self._timings)

    def _advance(self, block: bool) -> None:
        """Move the buckets on as far as they go without waiting (``block``: to the end)."""
        while True:
            if self._current is None:
                if self._next == len(self._order) or not self._ready[self._order[self._next]]:
                    return
                g = self._order[self._next]
                buf, start, comm_start = self.average.pack(g)
                steps = allreduce_steps(self.average.allreduce, buf, g)
                self._current = {"g": g, "buf": buf, "steps": steps, "requests": None, "t": (start, comm_start)}
            requests = self._current["requests"]
            if requests:
                if block:
                    MPI.Request.Waitall(requests)
                elif not MPI.Request.Testall(requests):
                    return
            try:
                self._current["requests"] = next(self._current["steps"])
            except StopIteration:
                g = self._current["g"]
                self._timings[g] = self.average.complete(g, self._current["buf"], *self._current["t"])
                self._current, self._next = None, self._next + 1

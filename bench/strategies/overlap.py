"""``ring --overlap``: each bucket's gradients are averaged while the rest of the backward pass runs.

Wait-free backpropagation (Zhang et al. 2017, Poseidon) as PyTorch DDP's reducer does it: a hook on every
parameter's gradient accumulation counts its bucket down, and a bucket whose last gradient has landed is ready.
One communication thread per rank all-reduces the buckets strictly in bucket index order, which is backward order
(:func:`bench.strategies.staging.bucket_groups`): every rank must launch its buckets in the same order, as DDP
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
"""

from __future__ import annotations

import threading
import time

from mpi4py import MPI

from bench.measure.buckets import BucketTiming, byte_shares
from bench.runtime.errors import UsageError
from bench.strategies.staging import HostStaging
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


class OverlappedBuckets:
    """Gradient-ready hooks and the communication thread for one model's buckets (``groups``: tuples of layer
    indices, in launch order). ``send(g)`` communicates bucket g on the communication thread and returns its
    timing: the ring's average (:func:`ring_average`) or a parameter-server worker's push of a layer."""

    def __init__(self, layers, groups, send, reversed_order: bool = False, series: str | None = None):
        require_thread_multiple("--overlap")
        self.send, self.series = send, series  # series: a per-layer series that also gets the communication time
        self._order = list(range(len(groups)))
        if reversed_order:  # testing aid (--overlap-fault-rank): launch in another order than the peers
            self._order.reverse()
        self._params_per_bucket = [sum(len(layers[i].params) for i in g) for g in groups]
        self._pending = list(self._params_per_bucket)
        self._ready = [threading.Event() for _ in groups]
        self._done = threading.Event()
        self._active = False
        self._timings: list[BucketTiming | None] = [None] * len(groups)
        self._error: BaseException | None = None
        self._handles = [
            p.register_post_accumulate_grad_hook(self._hook(g))
            for g, group in enumerate(groups)
            for i in group
            for p in layers[i].params
        ]
        self._thread = threading.Thread(target=self._serve, name="syncbench-comm", daemon=True)
        self._thread.start()

    def _hook(self, g: int):
        pending, ready = self._pending, self._ready

        def landed(_param) -> None:
            if self._active:
                pending[g] -= 1
                if pending[g] == 0:
                    ready[g].set()

        return landed

    def begin(self) -> None:
        """Before a step's backward: every bucket waits for all its gradients again."""
        self._pending[:] = self._params_per_bucket
        self._done.clear()
        self._active = True

    def finish(self) -> list[BucketTiming]:
        """After ``backward()``: wait until every bucket is communicated; their timings."""
        self._done.wait()
        self._active = False
        if self._error is not None:
            raise RuntimeError("the communication thread failed") from self._error
        return list(self._timings)

    def _serve(self) -> None:
        try:
            while True:
                for g in self._order:
                    self._ready[g].wait()
                    self._ready[g].clear()
                    self._timings[g] = self.send(g)
                self._done.set()
        except Exception as exc:  # noqa: BLE001 - surfaced in the training thread by finish()
            self._error = exc
            self._done.set()


def ring_average(staging: HostStaging, allreduce: RingAllreduce):
    """``send(g)`` for the ring: the non-overlapped exchange of bucket g (bench.strategies.averaging: pack, sum
    over the ring, scale by 1/p, unpack), timed in parts."""
    p = allreduce.topology.ring_size
    layers = staging.layers
    shares = [byte_shares({i: layers[i].bytes for i in g}) for g in staging.groups]

    def send(g: int) -> BucketTiming:
        start = time.perf_counter()
        buf = staging.pack(g, grads=True)
        comm_start = time.perf_counter()
        allreduce(buf, key=g)
        comm_end = time.perf_counter()
        staging.scale(g, 1.0 / p)
        staging.unpack(g, grads=True)
        sent = allreduce.elements_sent(buf.size, buf.itemsize) * buf.itemsize
        return BucketTiming(shares[g], start, comm_start, comm_end, time.perf_counter(), sent)

    return send


class HookDrivenBuckets:
    """The same buckets, in the same order, with the same kernel's schedule (:mod:`kernels.stepwise`), advanced on
    the training thread: every gradient hook tests the message step in flight and posts the next, and after
    ``backward()`` :meth:`finish` drives what is left to the end. No thread, so no ``MPI_THREAD_MULTIPLE`` and no
    second core needed; the price is that nothing moves while autograd computes between two hooks."""

    series = None

    def __init__(self, staging: HostStaging, allreduce: RingAllreduce, reversed_order: bool = False):
        self.staging, self.allreduce = staging, allreduce
        layers, groups = staging.layers, staging.groups
        self._shares = [byte_shares({i: layers[i].bytes for i in g}) for g in groups]
        self._order = list(reversed(range(len(groups)))) if reversed_order else list(range(len(groups)))
        self._params_per_bucket = [sum(len(layers[i].params) for i in g) for g in groups]
        self._pending = list(self._params_per_bucket)
        self._ready = [False] * len(groups)
        self._timings: list[BucketTiming | None] = [None] * len(groups)
        self._next, self._current, self._active = 0, None, False
        self._handles = [
            p.register_post_accumulate_grad_hook(self._hook(g))
            for g, group in enumerate(groups)
            for i in group
            for p in layers[i].params
        ]

    def _hook(self, g: int):
        def landed(_param) -> None:
            if self._active:
                self._pending[g] -= 1
                self._ready[g] = self._pending[g] == 0
                self._advance(block=False)

        return landed

    def begin(self) -> None:
        self._pending[:] = self._params_per_bucket
        self._ready = [False] * len(self._ready)
        self._next, self._current, self._active = 0, None, True

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
                self._launch(self._order[self._next])
            requests = self._current["requests"]
            if requests:
                if block:
                    MPI.Request.Waitall(requests)
                elif not MPI.Request.Testall(requests):
                    return
            try:
                self._current["requests"] = next(self._current["steps"])
            except StopIteration:
                self._complete()

    def _launch(self, g: int) -> None:
        start = time.perf_counter()
        buf = self.staging.pack(g, grads=True)
        comm_start = time.perf_counter()
        steps = allreduce_steps(self.allreduce, buf, g)
        self._current = {"g": g, "buf": buf, "steps": steps, "requests": None, "t": (start, comm_start)}

    def _complete(self) -> None:
        g, buf = self._current["g"], self._current["buf"]
        comm_end = time.perf_counter()
        self.staging.scale(g, 1.0 / self.allreduce.topology.ring_size)
        self.staging.unpack(g, grads=True)
        sent = self.allreduce.elements_sent(buf.size, buf.itemsize) * buf.itemsize
        start, comm_start = self._current["t"]
        self._timings[g] = BucketTiming(self._shares[g], start, comm_start, comm_end, time.perf_counter(), sent)
        self._current, self._next = None, self._next + 1

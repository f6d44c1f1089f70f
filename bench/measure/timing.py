"""Clocks and per-layer compute timing.

Forward time is measured like backward time, as a partition: a layer's forward *ends* when its ``forward``
returns, and its time is the gap since the previous layer's forward ended (or since the model's forward began),
so parameter-free work between layers is charged to the next layer. (Without a root, each layer gets only its own
``forward``'s time.) The marks come from wrapping each layer's ``forward`` (an instance attribute, removed
afterwards), not from module hooks: a module with any hook leaves ``Module.__call__``'s fast path, and measured
here that alone cost 1.5% of a resnet20 step with no-op hooks (39 hooked layers; ``forward`` wrappers 0.8%).
Backward time is measured from events in the order autograd produces them: a layer's backward *ends* when
the last of its parameters' gradients has been accumulated (``register_post_accumulate_grad_hook``), and its
time is the gap since the previous layer ended (or since ``backward()`` began). That partitions the whole
backward pass among layers, charging parameter-free operations (activations, pooling) to the next layer
autograd finishes. On CUDA the marks are CUDA events, resolved after one synchronisation per step.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from bench.workload.models import Layer


class CpuClock:
    """Marks are ``time.perf_counter()`` floats."""

    mark = staticmethod(time.perf_counter)  # called from every hook: no Python frame of our own

    def resolve(self) -> None:
        pass

    @staticmethod
    def seconds(a, b) -> float:
        return b - a

    @staticmethod
    def host_times(marks: list) -> list[float]:
        return list(marks)


class CudaClock:
    """Marks are CUDA events recorded on the current stream; :meth:`resolve` synchronises once."""

    def mark(self):
        ev = torch.cuda.Event(enable_timing=True)
        ev.record()
        return ev

    def resolve(self) -> None:
        torch.cuda.synchronize()

    @staticmethod
    def seconds(a, b) -> float:
        return a.elapsed_time(b) / 1000.0

    @staticmethod
    def host_times(marks: list) -> list[float]:
        """The ``time.perf_counter()`` reading at which the GPU passed each mark, so that GPU work can be set
        against host threads' clocks (a bucket's communication against the end of backward): an anchor event is
        recorded on an idle device after a synchronisation, where GPU and host time coincide to within a launch,
        and each mark lies its elapsed time before it."""
        torch.cuda.synchronize()
        anchor = torch.cuda.Event(enable_timing=True)
        anchor.record()
        anchor.synchronize()
        now = time.perf_counter()
        return [now - m.elapsed_time(anchor) / 1000.0 for m in marks]


def make_clock(device: str):
    return CudaClock() if device == "cuda" else CpuClock()


class LayerTimer:
    """Forward wrappers and gradient hooks that record per-layer forward and backward times into caller-given rows.

    Usage per step: :meth:`start_backward` just before ``loss.backward()``, then :meth:`collect` after it,
    which fills ``forward[l]``, ``backward[l]`` (seconds) and, if given, ``starts`` for a timeline.
    """

    def __init__(self, layers: list[Layer], clock, root: torch.nn.Module | None = None):
        self.layers = layers
        self.clock = clock
        n = len(layers)
        self._fwd_start = [None] * n
        self._fwd_end = [None] * n
        self._bwd_end = [None] * n
        self._bwd_order: list[int] = []
        self._pending = [0] * n
        self._bwd_start = None
        self._handles = []
        self._wrapped: list[tuple[torch.nn.Module, object]] = []  # (module, its own instance ``forward`` or None)
        self._last = [None]  # root mode: the previous forward mark
        if root is not None:
            self._wrap(root, self._root_forward)
        for layer in layers:
            self._wrap(layer.module, (self._layer_forward if root is None else self._partition_forward)(layer.index))
            for p in layer.params:
                self._handles.append(p.register_post_accumulate_grad_hook(self._grad(layer.index)))

    def _wrap(self, module: torch.nn.Module, make) -> None:
        self._wrapped.append((module, module.__dict__.get("forward")))
        module.forward = make(module.forward)

    # The wrappers and hooks run ~100 times a step on resnet20: they bind what they touch once (lists are reset in
    # place, never replaced) so that a call is one clock read and one store.
    def _root_forward(self, forward):
        last, mark = self._last, self.clock.mark

        def timed(*args, **kwargs):
            last[0] = mark()
            return forward(*args, **kwargs)

        return timed

    def _layer_forward(self, i):
        starts, ends, mark = self._fwd_start, self._fwd_end, self.clock.mark

        def wrap(forward):
            def timed(*args, **kwargs):
                starts[i] = mark()
                out = forward(*args, **kwargs)
                ends[i] = mark()
                return out

            return timed

        return wrap

    def _partition_forward(self, i):
        starts, ends, last, mark = self._fwd_start, self._fwd_end, self._last, self.clock.mark

        def wrap(forward):
            def timed(*args, **kwargs):
                out = forward(*args, **kwargs)
                t = mark()
                starts[i], ends[i], last[0] = last[0], t, t
                return out

            return timed

        return wrap

    def _grad(self, i):
        pending, ends, order, mark = self._pending, self._bwd_end, self._bwd_order, self.clock.mark

        def hook(param):
            pending[i] -= 1
            if pending[i] == 0:
                ends[i] = mark()
                order.append(i)

        return hook

    def start_backward(self) -> None:
        self._pending[:] = [len(layer.params) for layer in self.layers]
        self._bwd_order.clear()
        self._bwd_start = self.clock.mark()

    @property
    def backward_end(self):
        """The clock mark at which the last layer's gradients were complete in this step's backward pass (its
        start if no layer had a gradient): where the training thread ran out of compute."""
        return self._bwd_end[self._bwd_order[-1]] if self._bwd_order else self._bwd_start

    @property
    def backward_end_s(self) -> float:
        """:attr:`backward_end` as a ``time.perf_counter()`` reading (on CUDA: when the GPU got there)."""
        return self.clock.host_times([self.backward_end])[0]

    def collect(self, forward: np.ndarray, backward: np.ndarray, t0=None, starts: dict | None = None) -> None:
        """Write this step's seconds per layer; ``starts`` (optional) gets phase start times relative to ``t0``
        (a ``time.perf_counter()`` reading)."""
        self.clock.resolve()
        sec = self.clock.seconds
        for i in range(len(self.layers)):
            s, e = self._fwd_start[i], self._fwd_end[i]
            forward[i] = sec(s, e) if s is not None and e is not None else 0.0
        backward[:] = 0.0
        prev = self._bwd_start
        for i in self._bwd_order:
            backward[i] = sec(prev, self._bwd_end[i])
            prev = self._bwd_end[i]
        if starts is not None:
            self._timeline(t0, starts)
        self._fwd_start[:] = [None] * len(self.layers)
        self._fwd_end[:] = [None] * len(self.layers)

    def _timeline(self, t0: float, starts: dict) -> None:
        """Each layer's forward and backward start on the host clock (CUDA marks converted: they are events)."""
        ran = [i for i in range(len(self.layers)) if self._fwd_start[i] is not None]
        begins = [self._bwd_start] + [self._bwd_end[i] for i in self._bwd_order[:-1]]
        host = self.clock.host_times([self._fwd_start[i] for i in ran] + begins)
        for i, t in zip(ran, host):
            starts["forward"][i] = t - t0
        for i, t in zip(self._bwd_order, host[len(ran) :]):
            starts["backward"][i] = t - t0

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for module, own in reversed(self._wrapped):
            if own is None:
                del module.forward
            else:
                module.forward = own
        self._wrapped.clear()

"""One training step on one rank, the same for every strategy that takes steps: compute timed per layer by the
layer timer, communication timed per exchange here (kernels never time themselves), packing apart from
communication. Used by the lock-step and the decoupled schedules."""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
import torch.nn.functional as F

from bench.measure.buckets import record_buckets
from bench.measure.clocks import COMPRESSING, PACKING
from bench.measure.timing import LayerTimer, make_clock
from bench.run.context import RunContext, failing_here, inject_failure
from bench.runtime.diagnosis import POINTS
from bench.workload.stragglers import Straggler

mark = POINTS.mark  # where this rank is, for the hang diagnosis (bench.runtime.diagnosis)


class Stepper:
    def __init__(self, ctx: RunContext):
        self.ctx, self.run, self.cfg, self.comm, self.rec = ctx, ctx.run, ctx.cfg, ctx.comm, ctx.rec
        self.timer = LayerTimer(self.run.layers, make_clock(self.run.device.type), root=self.run.model)
        self.straggler = Straggler(self.cfg, self.comm.rank, self.comm.size)
        layers = len(self.run.layers)
        self._micro_times = (np.zeros(layers), np.zeros(layers))  # one micro-batch's forward, backward (accumulation)

    # ---- one step -------------------------------------------------------------------------------------
    def exchange(self, step: int, exchanges, t0) -> None:
        """Run and time ``exchanges``: communication per layer (a bucket's time shared by bytes), packing apart."""
        comm_row = self.rec["timing/comm"][step]
        bytes_row = self.rec["timing/comm_bytes"][step]
        pack_row = self.rec["timing/pack"][step]
        compress_row = self.rec["timing/compress"][step] if "timing/compress" in self.rec.series else None
        starts = self.rec["timeline/comm_start"][step] if self.cfg.trace else None
        layers = self.run.layers
        for ex in exchanges:
            packed, compressed = PACKING.seconds, COMPRESSING.seconds
            t = time.perf_counter()
            sent = ex.run()
            dt = time.perf_counter() - t
            pack = min(dt, PACKING.seconds - packed)
            squeeze = min(dt - pack, COMPRESSING.seconds - compressed)  # compress + decompress: their own phase
            if not ex.layers:  # e.g. waiting for reply headers: a per-step scalar, no layer's communication
                if ex.series:
                    self.rec[ex.series][step] += dt
                continue
            if sent == 0:  # nothing left this rank (one rank, nothing to send): local work, not communication
                pack = dt - squeeze
            extra = self.rec[ex.series][step] if ex.series else None
            total = sum(layers[i].bytes for i in ex.layers) or 1
            offset = t - t0
            for i in ex.layers:  # a bucket's time and bytes are shared among its layers by size
                share = layers[i].bytes / total
                comm_row[i] += (dt - pack - squeeze) * share
                pack_row[i] += pack * share
                if compress_row is not None:
                    compress_row[i] += squeeze * share
                bytes_row[i] += int(round(sent * share))
                if extra is not None:
                    extra[i] += (dt - pack - squeeze) * share
                if starts is not None:  # the bucket's layers as consecutive slices of its time, for the trace
                    starts[i] = offset
                    offset += dt * share

    def communicate_after_backward(self, step: int, t0: float) -> None:
        """The non-overlapped gradient exchange, after the ``--sync-wait`` barrier (rank skew as wait) if asked."""
        strat, rec = self.run.strategy, self.rec
        barrier = strat.barrier_for_wait(step) if self.cfg.sync_wait else None
        if barrier is not None:
            mark(step, "barrier before communication (--sync-wait)")
            t = time.perf_counter()
            barrier.Barrier()
            rec["timing/wait"][step] = time.perf_counter() - t
        mark(step, "exchange after backward")
        self.exchange(step, strat.after_backward(step), t0)

    def compute(self, step: int, t0: float) -> torch.Tensor:
        """Forward and backward over ``--accumulate-steps`` micro-batches (one without accumulation), gradients
        summed by autograd from losses scaled by 1 / K, so the gradient is the mean over the K micro-batches: on
        equal micro-batches, the gradient of one batch K times as large (Goyal et al. 2017 and PyTorch's
        accumulation recipe). Only the last micro-batch's backward arms the overlapped buckets (``ring`` and ``ps
        --overlap``) or lets DDP all-reduce (the others run in ``strategy.accumulating()``, DDP's ``no_sync``).
        Data, forward and backward times add up over the micro-batches; the loss recorded
        is the mean of theirs. Returns it (a tensor: read after the update, so CUDA is not synchronised early)."""
        cfg, run, rec, strat = self.cfg, self.run, self.rec, self.run.strategy
        k = cfg.accumulate_steps
        forward, backward = rec["timing/forward"][step], rec["timing/backward"][step]
        fwd, bwd = self._micro_times if k > 1 else (forward, backward)
        losses = []
        for micro in range(k):
            mark(step, "loading data")
            t = time.perf_counter()
            x, y = run.loader.next()
            rec["timing/data"][step] += time.perf_counter() - t
            mark(step, "forward and backward")
            last = micro == k - 1  # only the last backward communicates (overlap, ddp)
            with contextlib.nullcontext() if last else strat.accumulating():
                loss = F.cross_entropy(strat.forward(x), y)
                if strat.overlap is not None and last:
                    strat.overlap.begin()
                self.timer.start_backward()
                (loss / k if k > 1 else loss).backward()
            self.timer.collect(fwd, bwd, t0, self._trace_starts(step))
            if k > 1:
                forward += fwd
                backward += bwd
            losses.append(loss.detach())
        return torch.stack(losses).mean() if k > 1 else losses[0]

    def _trace_starts(self, step: int) -> dict | None:
        """With ``--trace``: this step's rows of forward and backward start times, for the layer timer."""
        if not self.cfg.trace:
            return None
        rows = self.rec
        return {"forward": rows["timeline/forward_start"][step], "backward": rows["timeline/backward_start"][step]}

    def step(self, step: int, t0: float) -> None:
        """One step on this rank: a lock-step server serves it; a computing rank runs the strategy's exchanges
        around forward, backward and the update, each phase timed into the Recorder's row ``step``."""
        cfg, run, rec, strat = self.cfg, self.run, self.rec, self.run.strategy
        t_start = time.perf_counter()
        if cfg.trace:
            rec["timeline/step_start"][step] = t_start - t0
        if not strat.topology.computes:  # a lock-step server (ps sync): its own times, no compute
            mark(step, "serving the step")
            strat.serve_step(step)
            rec["metrics/loss"][step] = np.nan
            rec["timing/step"][step] = time.perf_counter() - t_start
            self.ctx.record_across(step)
            return
        mark(step, "exchange before the step")
        self.exchange(step, strat.before_step(step), t0)
        if failing_here(cfg, self.comm.rank, step):
            inject_failure(cfg, self.comm, step)
        run.model.zero_grad(set_to_none=True)
        t_compute = time.perf_counter()
        loss = self.compute(step, t0)
        if self.straggler.active:
            compute_s = time.perf_counter() - t_compute - rec["timing/data"][step]  # slowed: compute, not loading
            rec["timing/injected"][step] = self.straggler.delay(step, compute_s)
        if strat.overlap is not None:
            mark(step, "waiting for the overlapped buckets")
            comm_starts = rec["timeline/comm_start"][step] if cfg.trace else None
            buckets = strat.overlap.finish()
            record_buckets(rec, step, buckets, self.timer.backward_end_s, comm_starts, t0, strat.overlap.series)
        else:
            self.communicate_after_backward(step, t0)
        mark(step, "optimizer step")
        t = time.perf_counter()
        strat.apply_update(step)
        if run.device.type == "cuda":
            torch.cuda.synchronize()
        rec["timing/optimizer"][step] = time.perf_counter() - t
        strat.record(rec, step)
        mark(step, "exchange after the update")
        self.exchange(step, strat.after_update(step), t0)
        rec["metrics/loss"][step] = loss.item()
        self.ctx.divergence.note(step, rec["metrics/loss"][step])
        rec["timing/step"][step] = time.perf_counter() - t_start
        self.ctx.record_across(step)

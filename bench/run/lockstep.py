"""The one training loop: compute timed per layer by hooks, communication timed per exchange by the driver,
the same way for every strategy. Rank 0 gathers the Recorder's rows and rewrites the results file every
``--flush-every`` steps and at the end, so a killed run keeps its completed steps."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from mpi4py import MPI

from bench.measure import results
from bench.measure.progress import Progress
from bench.measure.recorder import Recorder
from bench.measure.summary import print_summary
from bench.measure.timing import LayerTimer, make_clock
from bench.runtime.signals import StopFlag
from bench.runtime.watchdog import WATCHDOG
from bench.strategies.base import PACKING
from bench.workload.stragglers import Straggler
from kernels.tags import Tag, tag_for

STOP_CHECK_EVERY = 10  # steps between agreements on a pending stop signal


def declare_series(rec: Recorder, n_layers: int, trace: bool) -> None:
    L = (n_layers,)
    rec.add("timing/forward", "s", L)
    rec.add("timing/backward", "s", L)
    rec.add("timing/comm", "s", L)
    rec.add("timing/comm_bytes", "bytes", L, dtype=np.int64)
    rec.add("timing/pack", "s", L)
    for name in ("step", "wait", "data", "optimizer", "injected"):
        rec.add(f"timing/{name}", "s")
    rec.add("metrics/loss", "1")
    if trace:
        for name in ("forward", "backward", "comm"):
            rec.add(f"timeline/{name}_start", "s", L)
        rec.add("timeline/step_start", "s")


def evaluate(model, ds, device, batch: int = 1024) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``model`` on the test split."""
    model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for lo in range(0, len(ds.y_test), batch):
            x = torch.from_numpy(ds.x_test[lo : lo + batch]).to(device)
            y = torch.from_numpy(ds.y_test[lo : lo + batch]).to(device)
            out = model(x)
            loss += F.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
    model.train()
    return correct / len(ds.y_test), loss / len(ds.y_test)


def run_datasets(run) -> dict:
    """What every results file says about the run's layers and data partitions (all strategies)."""
    layers = run.layers
    return {
        "layers/name": (np.array([layer.name for layer in layers]), "1"),
        "layers/numel": (np.array([layer.numel for layer in layers], dtype=np.int64), "1"),
        "layers/bytes": (np.array([layer.bytes for layer in layers], dtype=np.int64), "bytes"),
        "data/partition_sizes": (np.array([len(p) for p in run.parts], dtype=np.int64), "samples"),
    }


def inject_failure(cfg, comm: MPI.Comm, step: int) -> None:
    """Testing aid (--fail-rank): raise, or wait for a message nobody sends (only the watchdog ends it)."""
    if cfg.fail_mode == "hang":
        comm.Recv(np.empty(1), source=MPI.ANY_SOURCE, tag=tag_for(Tag.TEST))
    raise RuntimeError(f"injected failure at step {step} (--fail-rank {cfg.fail_rank})")


class Trainer:
    def __init__(self, run, comm: MPI.Comm, attrs: dict, stop: StopFlag):
        self.run, self.comm, self.attrs, self.stop = run, comm, attrs, stop
        self.cfg = run.cfg
        self.rec = Recorder(comm, self.cfg.steps)
        declare_series(self.rec, len(run.layers), self.cfg.trace)
        run.strategy.declare(self.rec)
        self.timer = LayerTimer(run.layers, make_clock(run.device.type), root=run.model)
        self.straggler = Straggler(self.cfg, comm.rank, comm.size)
        self.evals: list[tuple[int, float, float]] = []
        self.done = 0
        self.stopped_by = ""
        self.steps_done: np.ndarray | None = None  # per rank, when ranks take different numbers of steps
        self.extra: dict = {}  # the strategy's own datasets, as last gathered (rank 0)
        self.side_s = 0.0  # evaluation and results writing inside the loop: not training time

    # ---- one step -------------------------------------------------------------------------------------
    def _exchange(self, step: int, exchanges, t0) -> None:
        comm_row = self.rec["timing/comm"][step]
        bytes_row = self.rec["timing/comm_bytes"][step]
        pack_row = self.rec["timing/pack"][step]
        starts = self.rec["timeline/comm_start"][step] if self.cfg.trace else None
        layers = self.run.layers
        for ex in exchanges:
            packed = PACKING.seconds
            t = time.perf_counter()
            sent = ex.run()
            dt = time.perf_counter() - t
            pack = min(dt, PACKING.seconds - packed)
            if not ex.layers:  # e.g. waiting for reply headers: a per-step scalar, no layer's communication
                if ex.series:
                    self.rec[ex.series][step] += dt
                continue
            if sent == 0:  # nothing left this rank (one rank, nothing to send): local work, not communication
                pack = dt
            extra = self.rec[ex.series][step] if ex.series else None
            total = sum(layers[i].bytes for i in ex.layers) or 1
            for i in ex.layers:  # a bucket's time and bytes are shared among its layers by size
                share = layers[i].bytes / total
                comm_row[i] += (dt - pack) * share
                pack_row[i] += pack * share
                bytes_row[i] += int(round(sent * share))
                if extra is not None:
                    extra[i] += (dt - pack) * share
                if starts is not None:
                    starts[i] = t - t0

    def step(self, step: int, t0: float) -> None:
        cfg, run, rec, strat = self.cfg, self.run, self.rec, self.run.strategy
        t_start = time.perf_counter()
        if cfg.trace:
            rec["timeline/step_start"][step] = t_start - t0
        if not strat.computes:  # a lock-step server (ps sync): its own times, no compute
            strat.serve_step(step)
            rec["metrics/loss"][step] = np.nan
            rec["timing/step"][step] = time.perf_counter() - t_start
            return
        self._exchange(step, strat.before_step(step), t0)
        t = time.perf_counter()
        x, y = run.loader.next()
        rec["timing/data"][step] = time.perf_counter() - t
        if step == cfg.fail_step and self.comm.rank == cfg.fail_rank:
            inject_failure(cfg, self.comm, step)
        run.model.zero_grad(set_to_none=True)
        t_compute = time.perf_counter()
        loss = F.cross_entropy(run.model(x), y)
        self.timer.start_backward()
        loss.backward()
        starts = None
        if cfg.trace:
            starts = {"forward": rec["timeline/forward_start"][step], "backward": rec["timeline/backward_start"][step]}
        self.timer.collect(rec["timing/forward"][step], rec["timing/backward"][step], t0, starts)
        if self.straggler.active:
            rec["timing/injected"][step] = self.straggler.delay(step, time.perf_counter() - t_compute)
        barrier = strat.barrier_for_wait(step) if cfg.sync_wait else None
        if barrier is not None:
            t = time.perf_counter()
            barrier.Barrier()
            rec["timing/wait"][step] = time.perf_counter() - t
        self._exchange(step, strat.after_backward(step), t0)
        t = time.perf_counter()
        strat.apply_update(step)
        if run.device.type == "cuda":
            torch.cuda.synchronize()
        rec["timing/optimizer"][step] = time.perf_counter() - t
        self._exchange(step, strat.after_update(step), t0)
        strat.end_step(step)
        rec["metrics/loss"][step] = loss.item()
        rec["timing/step"][step] = time.perf_counter() - t_start

    # ---- loop -----------------------------------------------------------------------------------------
    def _should_stop(self, step: int) -> bool:
        if (step + 1) % STOP_CHECK_EVERY:
            return False
        self.stop.poll_file(self.cfg.stop_file)
        flag = np.array([1 if self.stop else 0], dtype=np.int32)
        self.run.strategy.stop_comm().Allreduce(MPI.IN_PLACE, flag, op=MPI.MAX)
        return bool(flag[0])

    def _evaluate(self, step: int) -> None:
        run = self.run
        result = None
        if self.comm.rank == run.strategy.eval_rank():
            result = evaluate(run.model, run.dataset, run.device)
        result = self.comm.bcast(result, root=run.strategy.eval_rank())
        self.evals.append((step, *result))

    def flush(self, status: str) -> None:
        with WATCHDOG.guard(self.cfg.timeout, "gathering results to rank 0"):
            self.rec.gather(self.done)
            extra = self.run.strategy.gather_datasets()
        if self.comm.rank != 0:
            return
        self.extra = extra
        self.write(status, self.rec.datasets(), extra)

    def write(self, status: str, series: dict, extra: dict, steps_done: np.ndarray | None = None) -> None:
        """Rank 0: the results file from ``series`` (the Recorder's datasets), the evaluations so far, the run's
        own datasets and ``extra`` (the strategy's)."""
        ev = np.array(self.evals, dtype=np.float64).reshape(-1, 3)
        datasets = dict(series)
        datasets["metrics/eval_step"] = (ev[:, 0].astype(np.int64), "step")
        datasets["metrics/test_accuracy"] = (ev[:, 1], "1")
        datasets["metrics/test_loss"] = (ev[:, 2], "1")
        if steps_done is None:
            steps_done = self.steps_done if self.steps_done is not None else np.full(self.comm.size, self.done)
        done = int(steps_done.max()) if steps_done.size else 0
        attrs = self.attrs | {"status": status, "completed_steps": done, "stopped_by": self.stopped_by}
        run = run_datasets(self.run) | {"timing/steps_done": (steps_done, "steps")}
        results.write(self.run.out, attrs, datasets | run | extra)

    def train(self) -> int:
        cfg = self.cfg
        if not self.run.strategy.lockstep:
            from bench.run.decoupled import train_decoupled

            return train_decoupled(self)
        self.comm.Barrier()
        t0 = time.perf_counter()  # ranks leave the barrier together: a shared origin for timelines
        progress = Progress(cfg.steps, enabled=self.comm.rank == 0 and not cfg.quiet, unit="step")
        for step in range(cfg.steps):
            WATCHDOG.arm(cfg.timeout, f"step {step} (waiting on peers)")
            self.step(step, t0)
            self.done = step + 1
            progress.update(loss=self.rec["metrics/loss"][step] if self.run.strategy.computes else None)
            last = self.done == cfg.steps
            stop = not last and self._should_stop(step)
            t_side = time.perf_counter()
            if (cfg.evaluation_interval and self.done % cfg.evaluation_interval == 0) or last or stop:
                self._evaluate(step)
            if stop:
                self.stopped_by = self.stop.signal_name or "stop request on another rank"
                break
            if not last and self.done % cfg.flush_every == 0:
                self.flush("running")
            self.side_s += time.perf_counter() - t_side
        WATCHDOG.arm(cfg.timeout, "finishing the strategy")
        self.run.strategy.finish()
        wall = time.perf_counter() - t0
        progress.close()
        status = "stopped" if self.stopped_by else "complete"
        self.attrs["train_wall_s"] = wall
        self.attrs["eval_and_io_s"] = self.side_s
        self.flush(status)
        WATCHDOG.disarm()
        if self.comm.rank == 0:
            print_summary(self.run, self.rec, self.evals, wall - self.side_s, status, self.stopped_by, self.attrs)
        return 0

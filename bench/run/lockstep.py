"""The lock-step schedule (``ring``, ``localsgd``, ``ps --ps-mode sync``): every rank takes every step together,
so the ranks can agree on a stop and gather results at step boundaries. Rank 0 gathers the Recorder's rows and
appends them to the results file every ``--flush-every`` steps and at the end, so a killed run keeps its completed
steps.
"""

from __future__ import annotations

import time

from bench.measure.progress import Progress
from bench.measure.summary import print_summary
from bench.run.context import RunContext
from bench.run.stepper import Stepper
from bench.runtime.watchdog import WATCHDOG


def flush(ctx: RunContext, status: str) -> None:
    """Collective: rows and the strategy's datasets to rank 0, which appends them to the results file."""
    ctx.gather(ctx.run.strategy.gather_datasets)
    if ctx.comm.rank == 0:
        ctx.write(status, ctx.extra)


def train_lockstep(ctx: RunContext) -> int:
    run, comm, cfg, strategy = ctx.run, ctx.comm, ctx.cfg, ctx.run.strategy
    stepper = Stepper(ctx)
    ctx.resume()
    comm.Barrier()
    t0 = time.perf_counter()  # ranks leave the barrier together: a shared origin for timelines
    progress = Progress(cfg.steps, enabled=comm.rank == 0 and not cfg.quiet, unit="step", start=ctx.start)
    for step in range(ctx.start, cfg.steps):
        WATCHDOG.arm(cfg.timeout, f"step {step + 1} (waiting on peers)")
        stepper.step(step, t0)
        ctx.done = step + 1
        progress.update(loss=ctx.rec["metrics/loss"][step] if strategy.topology.computes else None)
        last = ctx.done == cfg.steps
        stop_now = ctx.agree_to_stop(step, strategy.comm, final=last)
        if ctx.between_rows(
            last, stop_now, lambda step=step: ctx.evaluate_on(strategy.topology.eval_rank, step), flush
        ):
            break
    wall = ctx.close(t0, progress, flush)
    WATCHDOG.disarm()
    if comm.rank == 0:
        print_summary(run, ctx.evals, wall - ctx.side_s, ctx.status, ctx.stopped_by, ctx.attrs)
    return ctx.finish()

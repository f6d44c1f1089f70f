"""The training loop of decoupled strategies (``ps --ps-mode async``, ``ssp``): ranks take different numbers of
steps, so nothing collective can happen until the end.

Workers step until a server's reply says the run is over (the update budget is spent, or a stop was asked for on
some rank), then say goodbye; servers serve until every worker has. Only then do all ranks meet again: the final
parameters go to the evaluating worker, the model is evaluated once, and the Recorder's rows (grown as each rank
needed them; rows a rank never reached stay zero) are gathered with each rank's number of steps beside them. A
signal or stop file therefore ends the run in order as in the lock-step loop. Periodic flushes go through the file
system instead of a collective (:mod:`bench.measure.snapshots`): every ``--flush-every`` of its own steps a
rank appends its new rows to its row file, and rank 0 copies what is new into the results file, so a run killed
outright keeps what the ranks had reported.

A stop request is also the one moment a checkpoint can be taken (every worker has said goodbye: no gradient is
in flight, every one received has been applied, or, in ssp, is held pending its clock): every rank writes its
piece before ssp's incomplete clocks would be applied, and the resumed run (``--resume``) puts each rank's rows
back, lets each worker go on when the staleness bound allows (:meth:`rejoin`) and continues each rank's step count
and the servers' clocks, so the budget of ``--steps`` x workers updates is kept. Not bit for bit: which gradient
meets which parameters depends on message timing, before and after the stop alike.
"""

from __future__ import annotations

import time

import numpy as np

from bench.measure import snapshots
from bench.measure.progress import Progress
from bench.measure.summary import print_summary
from bench.run.context import RunContext
from bench.run.lockstep import flush
from bench.run.stepper import Stepper
from bench.runtime.watchdog import WATCHDOG


def train_decoupled(ctx: RunContext) -> int:
    run, comm, cfg, strat, stop = ctx.run, ctx.comm, ctx.cfg, ctx.run.strategy, ctx.stop
    snapshots.remove(run.out, comm.rank)  # a killed earlier run's, which rank 0 must not mistake for this run's
    ctx.resume()
    comm.Barrier()
    t0 = time.perf_counter()
    progress = Progress(cfg.steps, enabled=comm.rank == 0 and not cfg.quiet, unit="step", start=ctx.start)

    own = snapshots.RankRows(run.out, comm.rank, cfg.flush_every) if comm.rank else None
    collector = snapshots.RowCollector(run.out, comm.size) if comm.rank == 0 else None

    def snapshot(done: int) -> None:
        with ctx.aside():
            if own is not None:
                own.append(ctx.rec, done)
            else:
                steps_done = collector.collect(ctx.rec, done, ctx.results_file())
                ctx.write("running", {}, steps_done, rows=({}, 0))

    if strat.topology.computes:
        ctx.done = _work(ctx, Stepper(ctx), progress, snapshot, t0)
    else:
        ctx.done = _serve(ctx, progress, snapshot)
    WATCHDOG.arm(cfg.timeout, "waiting for every rank to finish")
    wall = time.perf_counter() - t0
    progress.close()
    done = comm.allgather(ctx.done)
    requested = [name for name in comm.allgather(stop.signal_name) if name]
    if ctx.divergence.agree(min(comm.allgather(ctx.divergence.code))):
        requested = [ctx.divergence.message(ctx.unit)]
    ctx.stopped_by = requested[0] if requested else ""
    checkpointed = bool(requested) and not ctx.divergence.agreed and ctx.checkpoints.enabled
    if checkpointed:  # every worker said goodbye: no update in flight, the servers' state is the run's
        ctx.rec["timing/checkpoint"][ctx.done - 1] += ctx.checkpoints.write_pieces(max(done))
    strat.finish_serving(checkpointed)
    with ctx.aside():
        strat.collect_model(cfg.timeout)
        ctx.evaluate_on(strat.topology.eval_rank, max(done) - 1)
        ctx.rec.ensure(max(done))
        ctx.done = max(done)
        ctx.steps_done = np.array(done, dtype=np.int64)
        ctx.finish_timing(wall)  # before the last write, so the file has both (the summary's figures are final)
        for upto in range(cfg.flush_every, ctx.done, cfg.flush_every):  # a block at a time: rank 0 holds one
            ctx.gather(upto=upto)
            if comm.rank == 0:
                ctx.write("running", {})
        flush(ctx, ctx.status)  # the last block and the strategy's datasets
        if checkpointed:
            ctx.checkpoints.commit(ctx.appender.lengths if ctx.appender else {}, rows=done)
        if own is not None:
            own.close()
        snapshots.remove(run.out, comm.rank)  # the results file now holds everything
    ctx.finish_timing(wall)
    WATCHDOG.disarm()
    if comm.rank == 0:
        _summary(ctx, run, done, wall)
    return ctx.finish()


def _work(ctx: RunContext, stepper: Stepper, progress, snapshot, t0: float) -> int:
    """A worker: step until a server's reply says the run is over, then say goodbye; returns its steps."""
    cfg, strat, step = ctx.cfg, ctx.run.strategy, ctx.start
    if cfg.resume:
        with WATCHDOG.guard(cfg.timeout, "rejoining the servers after the resume"):
            strat.rejoin()
    while True:
        ctx.rec.ensure(step + 1)
        WATCHDOG.arm(cfg.timeout, f"step {step + 1} (waiting on the servers)")
        ctx.stop.poll_file(cfg.stop_file)
        strat.request_stop(bool(ctx.stop) or ctx.divergence.row is not None)
        stepper.step(step, t0)
        if ctx.comm.rank == 0:
            progress.update(loss=ctx.rec["metrics/loss"][step])
        if strat.run_is_over:
            break
        if (step + 1) % cfg.flush_every == 0:
            snapshot(step + 1)
        step += 1
    strat.say_goodbye(step + 1)
    return step + 1


def _serve(ctx: RunContext, progress, snapshot) -> int:
    """A server: serve until every worker has said goodbye; returns its rows (one per W gradients)."""
    strat, served = ctx.run.strategy, [0]

    def on_row() -> None:
        progress.update()
        served[0] += 1
        if served[0] % ctx.cfg.flush_every == 0:
            snapshot(strat.record_rows())

    return strat.serve_events(ctx.stop, ctx.cfg.timeout, on_row=on_row)


def _summary(ctx: RunContext, run, done: list[int], wall: float) -> None:
    workers = [r for r in range(ctx.comm.size) if r in run.strategy.topology.workers]
    per_worker = [int(done[r]) for r in workers]
    print_summary(run, ctx.evals, wall, ctx.status, ctx.stopped_by, ctx.attrs, per_worker)
    stale = _staleness_line(ctx)
    if stale:
        print(stale)


def _staleness_line(ctx: RunContext) -> str:
    """Staleness over the applied gradients. ``ps/updates`` holds one row per gradient per server that applied its
    piece, so a gradient is counted once: the rows of the server that applied the most (all servers apply every
    gradient; the budget's in-flight pushes may reach one server and not yet another)."""
    found = ctx.extra.get("ps/updates/staleness")
    if found is None or not found[0].size:
        return ""
    s, units = found
    servers = ctx.extra["ps/updates/server"][0]
    gradients = int(np.bincount(servers - servers.min()).max())
    per = f" (one row per server: {s.size} rows from {np.unique(servers).size} servers)" if s.size != gradients else ""
    return f"  staleness       mean {s.mean():.2f}, max {s.max():.0f} {units} over {gradients} applied gradients{per}"

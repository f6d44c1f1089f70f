"""The training loop of decoupled strategies (``ps --ps-mode async``, ``ssp``): ranks take different numbers of
steps, so nothing collective can happen until the end.

Workers step until a server's reply says the run is over (the update budget is spent, or a stop was asked for on
some rank), then say goodbye; servers serve until every worker has. Only then do all ranks meet again: the final
parameters go to the evaluating worker, the model is evaluated once, and the Recorder's rows (grown as each rank
needed them; rows a rank never reached stay zero) are gathered with each rank's number of steps beside them. A
signal or stop file therefore ends the run in order as in the lock-step loop. Periodic flushes go through the file
system instead of a collective (:mod:`bench.measure.snapshots`): every ``--flush-every`` of its own steps a
rank writes its rows, and rank 0 rewrites the results file from them, so a run killed outright keeps what the
ranks had reported.
"""

from __future__ import annotations

import time

import numpy as np

from bench.measure import snapshots
from bench.measure.progress import Progress
from bench.measure.summary import print_summary
from bench.runtime.watchdog import WATCHDOG


def train_decoupled(trainer) -> int:
    cfg, comm, strat = trainer.cfg, trainer.comm, trainer.run.strategy
    out = trainer.run.out
    snapshots.remove(out, comm.rank)  # a killed earlier run's, which rank 0 must not mistake for this run's
    comm.Barrier()
    t0 = time.perf_counter()
    progress = Progress(cfg.steps, enabled=comm.rank == 0 and not cfg.quiet, unit="step")

    def snapshot(done: int) -> None:
        t = time.perf_counter()
        snapshots.write(out, comm.rank, trainer.rec, done)
        if comm.rank == 0:
            series, steps_done = snapshots.assemble(out, comm.size, trainer.rec, done)
            trainer.write("running", series, {}, steps_done)
        trainer.side_s += time.perf_counter() - t

    if strat.computes:
        step = 0
        while True:
            trainer.rec.ensure(step + 1)
            WATCHDOG.arm(cfg.timeout, f"step {step} (waiting on the servers)")
            trainer.stop.poll_file(cfg.stop_file)
            strat.worker.stop_request = bool(trainer.stop)
            trainer.step(step, t0)
            trainer.done = step + 1
            if comm.rank == 0:
                progress.update(loss=trainer.rec["metrics/loss"][step])
            if strat.worker.stop_seen:
                break
            if trainer.done % cfg.flush_every == 0:
                snapshot(trainer.done)
            step += 1
        strat.worker.say_bye(trainer.done)
    else:
        served = [0]

        def on_row() -> None:
            progress.update()
            served[0] += 1
            if served[0] % cfg.flush_every == 0:
                snapshot(strat.record_rows())

        trainer.done = strat.serve_events(trainer.stop, cfg.timeout, on_row=on_row)
    WATCHDOG.arm(cfg.timeout, "waiting for every rank to finish")
    wall = time.perf_counter() - t0
    progress.close()
    done = comm.allgather(trainer.done)
    requested = comm.allgather(trainer.stop.signal_name)
    stopped = [name for name in requested if name]
    trainer.stopped_by = stopped[0] if stopped else ""
    t_side = time.perf_counter()
    strat.collect_model(cfg.timeout)
    trainer._evaluate(max(done) - 1)
    rows = max(done)
    trainer.rec.ensure(rows)
    trainer.done = rows
    trainer.steps_done = np.array(done, dtype=np.int64)
    status = "stopped" if trainer.stopped_by else "complete"
    trainer.attrs["train_wall_s"] = wall
    trainer.flush(status)
    snapshots.remove(out, comm.rank)  # the results file now holds everything
    trainer.side_s += time.perf_counter() - t_side
    trainer.attrs["eval_and_io_s"] = trainer.side_s
    WATCHDOG.disarm()
    if comm.rank == 0:
        workers = [r for r in range(comm.size) if r in strat.topology.workers]
        samples = int(sum(done[r] for r in workers)) * trainer.run.batch
        print_summary(
            trainer.run, trainer.rec, trainer.evals, wall, status, trainer.stopped_by, trainer.attrs, samples=samples
        )
        stale = _staleness_line(trainer)
        if stale:
            print(stale)
    return 0


def _staleness_line(trainer) -> str:
    found = trainer.extra.get("ps/updates/staleness")
    if found is None or not found[0].size:
        return ""
    s, units = found
    return f"  staleness       mean {s.mean():.2f}, max {s.max():.0f} {units} over {s.size} applied gradients"

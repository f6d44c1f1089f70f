"""The rounds schedule (``fedavg``), on every rank: rank 0 aggregates, the others host clients (the strategy's round
hooks: :mod:`bench.strategies.fedavg.strategy`).

Rows of the Recorder are rounds. Every ``--eval-every`` rounds rank 0 evaluates the global model; every 10 rounds
the ranks agree on a pending stop signal (as lock-step runs do at steps), and every ``--flush-every`` rounds the
results file is rewritten, so a killed run keeps its completed rounds. Ranks hosting no sampled client in a round
go on to the next; they only ever wait for the aggregator's model (under the watchdog) or at those agreed points.
"""

from __future__ import annotations

import time

import numpy as np

from bench.measure.progress import Progress
from bench.measure.round_summary import print_round_summary
from bench.run.context import RunContext, evaluate, failing_here, inject_failure
from bench.runtime.diagnosis import POINTS
from bench.runtime.watchdog import WATCHDOG
from bench.strategies.fedavg.needs import placement_line


def play_round(ctx: RunContext, r: int) -> list[int]:
    """One round on this rank; returns the client ranks that stopped answering (rank 0, drop mode)."""
    cfg, rec, strategy, lost = ctx.cfg, ctx.rec, ctx.run.strategy, []
    t0 = time.perf_counter()
    sampled = strategy.sampled(r)
    POINTS.mark(r, "round start")
    if ctx.comm.rank == 0:
        POINTS.mark(r, "sending the model, receiving and folding the clients' updates")
        lost = strategy.aggregate_round(r, sampled, rec)
        ctx.divergence.note(r, *strategy.global_model_check(r))
    else:
        mine = strategy.my_sampled(sampled)
        if failing_here(cfg, ctx.comm.rank, r):
            inject_failure(cfg, ctx.comm, r)  # testing aid: a client rank that dies or never answers
        if mine:
            POINTS.mark(r, "receiving the model, training and uploading clients")
            WATCHDOG.arm(cfg.timeout, f"round {r + 1}: waiting for the aggregator's model")
            strategy.host_round(r, sampled, mine, rec)
            WATCHDOG.disarm()
        else:
            rec["metrics/loss"][r] = np.nan
    rec["timing/step"][r] = time.perf_counter() - t0
    ctx.record_across(r)
    return lost


def evaluate_global(ctx: RunContext, r: int) -> None:
    if ctx.comm.rank == 0:
        ctx.run.strategy.load_global_model()
        ctx.record_evaluation(r, evaluate(ctx.run.model, ctx.run.dataset, ctx.run.device))


def flush(ctx: RunContext, status: str) -> None:
    ctx.gather()
    with WATCHDOG.guard(ctx.cfg.timeout, "gathering results to rank 0"):
        peak = ctx.comm.gather(ctx.run.strategy.peak_rss(), root=0)
    if ctx.comm.rank == 0:
        _write(ctx, status, peak)


def write_alone(ctx: RunContext, status: str) -> None:
    """Rank 0 only, when client ranks stopped answering: rows gathered so far are in the file; rank 0's own rows
    since then are appended (the others' stay zero)."""
    peak = [ctx.run.strategy.peak_rss()] + [0] * (ctx.comm.size - 1)
    first = ctx.rec.gathered
    _write(ctx, status, peak, (ctx.rec.own_rows(first, ctx.done), first))


def _write(ctx: RunContext, status: str, peak: list, rows=None) -> None:
    datasets, attrs = ctx.run.strategy.round_datasets(peak)
    ctx.write(status, datasets, np.full(ctx.comm.size, ctx.done, dtype=np.int64), attrs, rows)


def abort_without(ctx: RunContext, lost: list[int], r: int) -> None:
    """Client ranks stopped answering (--on-client-timeout drop): keep the rounds so far, then end the job."""
    evaluate_global(ctx, r)
    write_alone(ctx, f"failed: client ranks {lost} stopped answering in round {r + 1}")
    WATCHDOG.abort(
        f"client ranks {lost} did not answer within {ctx.cfg.client_timeout or ctx.cfg.timeout:g} s in round {r + 1}: "
        f"their clients were counted as dropped, the results of rounds 1..{r + 1} were written to {ctx.run.out}; "
        "ending the job"
    )


def train_rounds(ctx: RunContext) -> int:
    run, comm, cfg, strategy = ctx.run, ctx.comm, ctx.cfg, ctx.run.strategy
    strategy.prepare(run)
    ctx.resume()
    comm.Barrier()
    t0 = time.perf_counter()
    progress = Progress(cfg.rounds, enabled=comm.rank == 0 and not cfg.quiet, unit="round", start=ctx.start)
    for r in range(ctx.start, cfg.rounds):
        lost = play_round(ctx, r)
        ctx.done = r + 1
        if lost:
            abort_without(ctx, lost, r)
        last = ctx.done == cfg.rounds
        stop_now = ctx.agree_to_stop(r, comm, final=last)
        WATCHDOG.disarm()
        ended = ctx.between_rows(last, stop_now, lambda r=r: evaluate_global(ctx, r), flush)
        progress.update(acc=ctx.last_accuracy)
        if ended:
            break
    wall = ctx.close(t0, progress, flush)
    if comm.rank == 0:
        print_round_summary(ctx, wall - ctx.side_s, ctx.status, placement_line(cfg))
    return ctx.finish()

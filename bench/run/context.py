"""One run context, shared by the three schedules (:mod:`lockstep`, :mod:`decoupled`, :mod:`rounds`): the Recorder,
evaluations, agreeing on a stop, timing what is not training (evaluation, writing), and writing the results file.

A schedule drives the loop and calls only the public methods here; what differs between schedules (which rank
evaluates, what a row is, the strategy's own datasets) is passed in, not looked up.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from mpi4py import MPI

from bench.measure.appender import Appender
from bench.measure.recorder import Recorder
from bench.run.checkpoint import Checkpoints, check_results_file, read_manifest, restore, segment_record
from bench.run.divergence import EXIT_DIVERGED, Divergence
from bench.runtime.diagnosis import POINTS
from bench.runtime.errors import UsageError
from bench.runtime.launch import agree
from bench.runtime.watchdog import WATCHDOG
from bench.strategies import facts
from kernels.tags import Tag, tag_for

STOP_CHECK_EVERY = 10  # rows (steps or rounds) between agreements on a pending stop signal


def declare_series(rec: Recorder, n_layers: int, trace: bool) -> None:
    """The series every schedule records (strategies add their own through ``Strategy.declare``)."""
    L = (n_layers,)
    rec.add("timing/forward", "s", L)
    rec.add("timing/backward", "s", L)
    rec.add("timing/comm", "s", L)
    rec.add("timing/comm_bytes", "bytes", L, dtype=np.int64)
    rec.add("timing/pack", "s", L)
    for name in ("step", "wait", "data", "optimizer", "injected", "checkpoint"):
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


def failing_here(cfg, rank: int, row: int) -> bool:
    """Testing aid: this rank fails in the loop at this row (--fail-rank, --fail-step; a kill in the checkpoint
    write happens in :mod:`bench.run.checkpoint` instead)."""
    return row == cfg.fail_step and rank == cfg.fail_rank and cfg.fail_mode != "kill-in-checkpoint"


def inject_failure(cfg, comm: MPI.Comm, row: int) -> None:
    """Testing aid (--fail-rank): raise, or wait for a message nobody sends (only the watchdog ends it)."""
    if cfg.fail_mode == "hang":
        comm.Recv(np.empty(1), source=MPI.ANY_SOURCE, tag=tag_for(Tag.TEST))
    raise RuntimeError(f"injected failure at step {row} (--fail-rank {cfg.fail_rank})")


class RunContext:
    """What a run keeps whatever its schedule. ``rows``: steps or rounds planned; ``unit``: "step" or "round"."""

    def __init__(self, run, comm: MPI.Comm, attrs: dict, stop, rows: int, unit: str = "step"):
        self.run, self.comm, self.attrs, self.stop, self.cfg = run, comm, attrs, stop, run.cfg
        self.unit = POINTS.unit = unit
        self.rec = Recorder(comm, rows)
        declare_series(self.rec, len(run.layers), self.cfg.trace and unit == "step")
        if self.cfg.takes("own messages"):  # the suite's own messages: their bytes to other nodes are counted
            self.rec.add("timing/comm_bytes_across", "bytes", (len(run.layers),), dtype=np.int64)
            self.rec.add("timing/comm_across", "s", (len(run.layers),))
        self.evals: list[tuple[int, float, float]] = []
        self.done = 0  # rows completed
        self.stopped_by = ""
        self.steps_done: np.ndarray | None = None  # per rank, where ranks take different numbers of steps
        self.extra: dict = {}  # the strategy's own datasets, as last gathered (rank 0)
        self.side_s = 0.0  # evaluation and results writing inside the loop: not training time
        self.divergence = Divergence(MPI.COMM_WORLD.rank, MPI.COMM_WORLD.size)
        self.pending: tuple[dict, int] = ({}, 0)  # rank 0: rows gathered and not yet written, and their first row
        self.appender: Appender | None = None
        self.checkpoints = Checkpoints(self)
        self.start = 0  # the first row this segment runs (a resumed run's checkpoint row)
        self.earlier: list[dict] = []  # the segments before this one (a resumed run's)
        self.segment = segment_record(comm.size)

    # ---- checkpoints and segments ----------------------------------------------------------------------------
    def resume(self) -> None:
        """Collective, before the first row: with ``--resume``, load the newest checkpoint and continue from its
        row (:mod:`bench.run.checkpoint`); the results file is cut back to it."""
        if not self.cfg.resume:
            return
        manifest = agree(self.comm, read_manifest, self.cfg, self.comm.size)
        agree(self.comm, restore, self, manifest)
        self.run.strategy.resumed()  # every rank loaded its piece: collectives are safe again
        decoupled = self.run.strategy.schedule == "decoupled"  # each rank its own rows (same rank count)
        self.start = self.done = int(manifest["rows"][self.comm.rank] if decoupled else manifest["row"])
        self.rec.gathered = self.start if not decoupled else 0
        self.evals = [tuple(e) for e in manifest["evaluations"]]
        self.earlier = manifest["segments"]
        self.segment["start"] = self.start + 1
        agree(self.comm, self._cut_results_file, manifest)
        if decoupled:
            self._reload_rows(manifest["rows"])
        if self.comm.rank == 0 and not self.cfg.quiet:
            print(f"syncbench: resuming {self.run.out} after {self.unit} {self.start} (checkpoint written "
                  f"{manifest.get('written_utc', '?')})", flush=True)  # fmt: skip

    def _cut_results_file(self, manifest: dict) -> None:
        """Rank 0: the results file back to the checkpoint's rows (a usage error if it cannot be reopened)."""
        if self.comm.rank != 0:
            return
        check_results_file(self.run.out, manifest)
        try:
            self.results_file().resume(int(manifest["row"]), manifest["growing"], self.comm.size)
        except (OSError, ValueError, KeyError) as exc:
            raise UsageError(f"--resume: cannot reopen {self.run.out} to continue it ({exc})") from None

    def _reload_rows(self, rows: list[int]) -> None:
        """Collective, decoupled runs: each rank's rows before the checkpoint back into its Recorder, from the
        results file (ranks took different numbers of steps, so the run's last write rewrites every row of every
        rank, as an uninterrupted run's does)."""
        names = list(self.rec.series)
        mine = self.comm.scatter(self.results_file().rows_of(names, rows) if self.comm.rank == 0 else None, root=0)
        self.rec.ensure(rows[self.comm.rank])
        for name, values in mine.items():
            self.rec[name][: len(values)] = values

    def segments(self, status: str = "") -> list[dict]:
        """Every segment of the run so far (provenance): this one ends at the rows done, with ``status`` (default:
        the run's)."""
        now = self.segment | {"end": self.done, "status": status or self.status, "stopped_by": self.stopped_by}
        return [*self.earlier, now]

    def checkpoint(self, flush) -> None:
        """Collective: every rank writes its piece (timed into ``timing/checkpoint``), the rows up to here are
        flushed, then rank 0 names the checkpoint in the manifest."""
        self.rec["timing/checkpoint"][self.done - 1] += self.checkpoints.write_pieces(self.done)
        flush(self, "running" if not self.stopped_by else self.status)
        self.checkpoints.commit(self.appender.lengths if self.appender else {})

    def record_across(self, row: int) -> None:
        """The bytes this rank sent to other nodes during the row, and the seconds it spent exchanging with them
        (both counted by the strategy's communicator), shared among the layers as the row's bytes and
        communication time are (by layer size where it recorded none: a server's replies)."""
        if "timing/comm_bytes_across" not in self.rec.series:
            return
        comm = self.run.strategy.comm
        total, seconds = comm.take_across(), comm.take_across_seconds()
        if total:
            weights = self._weights(row, "timing/comm_bytes")
            shares = np.floor(total * weights).astype(np.int64)
            shares[int(np.argmax(weights))] += total - shares.sum()  # the rounding remainder: the row's total exact
            self.rec["timing/comm_bytes_across"][row] += shares
        if seconds:
            self.rec["timing/comm_across"][row] += seconds * self._weights(row, "timing/comm")

    def _weights(self, row: int, series: str) -> np.ndarray:
        """The row's per-layer shares of ``series`` (layer sizes' where it is all zero), summing to 1."""
        values = self.rec[series][row].astype(np.float64)
        if not values.sum():
            values = np.array([layer.bytes for layer in self.run.layers], dtype=np.float64)
        return values / values.sum()

    # ---- evaluation ------------------------------------------------------------------------------------
    def due_for_evaluation(self, last: bool, stop: bool) -> bool:
        every = self.cfg.evaluation_interval
        return bool(every and self.done % every == 0) or last or stop

    def record_evaluation(self, row: int, result: tuple[float, float]) -> None:
        self.evals.append((row, *result))

    def evaluate_on(self, rank: int, row: int) -> None:
        """Collective: ``rank`` (which holds the current model) evaluates it; every rank records the result."""
        result = evaluate(self.run.model, self.run.dataset, self.run.device) if self.comm.rank == rank else None
        self.record_evaluation(row, self.comm.bcast(result, root=rank))

    @property
    def last_accuracy(self) -> float | None:
        return self.evals[-1][1] if self.evals else None

    # ---- stopping --------------------------------------------------------------------------------------
    def agree_to_stop(self, row: int, comm: MPI.Comm, final: bool = False) -> bool:
        """Every STOP_CHECK_EVERY rows and after the ``final`` one: collective over ``comm``, true if a stop was
        asked for on any rank (and rows remain) or some rank diverged (:mod:`bench.run.divergence`). The watchdog
        is left armed (what follows, evaluation, waits on peers too); the schedule disarms it."""
        if (row + 1) % STOP_CHECK_EVERY and not final:
            return False
        self.stop.poll_file(self.cfg.stop_file)
        flags = np.array([-1 if self.stop else 0, self.divergence.code], dtype=np.int64)
        POINTS.mark(row, "agreeing on a stop")
        WATCHDOG.arm(self.cfg.timeout, f"{self.unit} {row + 1}: agreeing on a stop with every rank")
        comm.Allreduce(MPI.IN_PLACE, flags, op=MPI.MIN)
        return self.divergence.agree(int(flags[1])) or (bool(flags[0]) and not final)

    def mark_stopped(self) -> None:
        if self.divergence.agreed:
            self.stopped_by = self.divergence.message(self.unit)
        else:
            self.stopped_by = self.stop.signal_name or "stop request on another rank"

    @property
    def status(self) -> str:
        if self.divergence.agreed:
            return "diverged"
        return "stopped" if self.stopped_by else "complete"

    @property
    def exit_code(self) -> int:
        """What ``python -m bench train`` exits with: 0, or EXIT_DIVERGED (the file is kept either way)."""
        return EXIT_DIVERGED if self.divergence.agreed else 0

    def finish(self) -> int:
        """After the summary: rank 0 says on stderr that a diverged run diverged; every rank returns the exit code."""
        if self.divergence.agreed and self.comm.rank == 0:
            sys.stderr.write(
                f"syncbench: the run diverged ({self.stopped_by}); results kept in {self.run.out} "
                f"(status diverged); exit code {EXIT_DIVERGED}\n"
            )
        return self.exit_code

    # ---- time that is not training -----------------------------------------------------------------------
    @contextmanager
    def aside(self):
        """Time spent inside the loop on evaluation and writing, left out of throughput."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.side_s += time.perf_counter() - t

    def finish_timing(self, wall: float) -> None:
        self.attrs["train_wall_s"] = wall
        self.attrs["eval_and_io_s"] = self.side_s

    def between_rows(self, last: bool, stop_now: bool, evaluate, flush) -> bool:
        """After a row of a lock-step or rounds run: evaluate when due, stop if agreed, flush every
        ``--flush-every`` rows (all of it aside from training time). True: the loop ends here."""
        with self.aside():
            if self.due_for_evaluation(last, stop_now):
                POINTS.mark(self.done - 1, "evaluation")
                evaluate()
            if stop_now:
                self.mark_stopped()
                return True
            if not last and self.checkpoints.due(self.done):
                self.checkpoint(flush)
            elif not last and self.done % self.cfg.flush_every == 0:
                flush(self, "running")
        return False

    def close(self, t0: float, progress, flush) -> float:
        """End of the loop: training wall time recorded, the final flush; returns the wall seconds."""
        wall = time.perf_counter() - t0
        progress.close()
        self.finish_timing(wall)
        if self.stopped_by and not self.divergence.agreed and self.checkpoints.enabled:
            self.checkpoint(flush)  # a stop request: the run can resume from here
        else:
            flush(self, self.status)
        return wall

    # ---- results -----------------------------------------------------------------------------------------
    def gather(self, strategy_datasets=None, upto: int | None = None) -> None:
        """Collective: the Recorder's rows since the last gather, up to ``upto`` (default: all done), and, if
        given, the strategy's own datasets to rank 0, which keeps them for :meth:`write`."""
        POINTS.mark(self.done - 1, "gathering results to rank 0")
        with WATCHDOG.guard(self.cfg.timeout, "gathering results to rank 0"):
            first = self.rec.gathered
            rows = self.rec.gather(self.done if upto is None else upto)
            extra = strategy_datasets() if strategy_datasets else {}
        if self.comm.rank == 0:
            self.extra, self.pending = extra, (rows, first)

    def write(self, status: str, extra: dict, steps_done=None, attrs: dict | None = None, rows=None) -> None:
        """Rank 0: append the rows gathered last (or ``rows``: (blocks, first row)) to the results file, with the
        evaluations so far, the run's own datasets, ``extra`` (the strategy's) and the root attributes. A status
        other than ``running`` is the last write: the file is closed."""
        blocks, first = rows if rows is not None else self.pending
        self.pending = ({}, self.rec.gathered)
        ev = np.array(self.evals, dtype=np.float64).reshape(-1, 3)
        datasets = {
            "metrics/eval_step": (ev[:, 0].astype(np.int64), self.unit),
            "metrics/test_accuracy": (ev[:, 1], "1"),
            "metrics/test_loss": (ev[:, 2], "1"),
        }
        if steps_done is None:
            steps_done = self.steps_done if self.steps_done is not None else np.full(self.comm.size, self.done)
        done = int(steps_done.max()) if steps_done.size else 0
        root = self.attrs | {"status": status, "completed_steps": done, "stopped_by": self.stopped_by}
        root["segments"] = self.segments(status)
        run = run_datasets(self.run) | {"timing/steps_done": (np.asarray(steps_done, dtype=np.int64), f"{self.unit}s")}
        self.results_file().write(root | (attrs or {}), blocks, first, datasets | run | extra)
        if status != "running":
            self.results_file().close()

    def results_file(self) -> Appender:
        """Rank 0's appending writer, created at the first write (:mod:`bench.measure.appender`)."""
        if self.appender is None:
            cfg = self.cfg
            regrown = facts(cfg.strategy).logical_ranks  # a resume may bring more ranks
            self.appender = Appender(
                self.run.out, self.comm.size, self.unit, cfg.flush_every, cfg.compression, regrown=regrown
            )
        return self.appender

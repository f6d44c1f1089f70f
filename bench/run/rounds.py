"""The FedAvg round loop, on every rank: rank 0 aggregates (:mod:`bench.strategies.fedavg.server`), the others
host clients (:mod:`bench.strategies.fedavg.client`).

Rows of the Recorder are rounds. Every ``--eval-every`` rounds rank 0 evaluates the global model; every 10 rounds
the ranks agree on a pending stop signal (like the driver's steps), and every ``--flush-every`` rounds the results
file is rewritten, so a killed run keeps its completed rounds. Ranks hosting no sampled client in a round go on
to the next; they only ever wait for the aggregator's model (under the watchdog) or at those agreed points.
"""

from __future__ import annotations

import resource
import time

import numpy as np
from mpi4py import MPI

from bench.measure import results
from bench.measure.progress import Progress
from bench.measure.recorder import Recorder
from bench.measure.timing import LayerTimer, make_clock
from bench.run.lockstep import STOP_CHECK_EVERY, declare_series, evaluate, inject_failure, run_datasets
from bench.runtime.watchdog import WATCHDOG
from bench.strategies.base import HostStaging
from bench.strategies.fedavg.client import STATUS_NAMES, ClientHost
from bench.strategies.fedavg.sampling import sample_clients
from bench.strategies.fedavg.server import Aggregator
from bench.workload.models import flat_parameters
from bench.workload.stragglers import parse_dist

AGG_SERIES = ("send", "receive", "aggregate", "idle")
COUNTS = ("sampled", "finished", "dropped", "late")


class FederatedLoop:
    def __init__(self, run, comm: MPI.Comm, attrs: dict, stop):
        self.run, self.comm, self.attrs, self.stop, self.cfg = run, comm, attrs, stop, run.cfg
        self.topology = run.strategy.topology
        self.rec = Recorder(comm, self.cfg.rounds)
        declare_series(self.rec, len(run.layers), trace=False)
        L = (len(run.layers),)
        self.rec.add("fedavg/download", "s", L)
        self.rec.add("fedavg/upload", "s", L)
        for name in AGG_SERIES:
            self.rec.add(f"fedavg/aggregator_{name}", "s")
        for name in COUNTS:
            self.rec.add(f"fedavg/{name}", "clients", dtype=np.int64)
        initial = flat_parameters(run.layers)
        self.aggregator = self.host = None
        if comm.rank == 0:
            self.aggregator = Aggregator(self.cfg, comm, run.layers, initial, self.topology)
            self.staging = HostStaging(run.layers, run.device)
        else:
            timer = LayerTimer(run.layers, make_clock(run.device.type), root=run.model)
            sigma = parse_dist(self.cfg.client_speed, "--client-speed")
            self.host = ClientHost(self.cfg, comm, run, self.topology.my_clients, timer, sigma)
        self.evals: list[tuple[int, float, float]] = []
        self.lost: list[int] = []  # client ranks that stopped answering (--on-client-timeout drop)
        self.done, self.stopped_by = 0, ""

    # ---- one round --------------------------------------------------------------------------------------
    def round(self, r: int) -> None:
        cfg, rec = self.cfg, self.rec
        t0 = time.perf_counter()
        sampled = sample_clients(cfg.seed, r, cfg.clients, cfg.fraction)
        if self.aggregator is not None:
            out = self.aggregator.run_round(r, sampled, cfg.client_timeout or cfg.timeout)
            self.lost = out["lost"]
            for name in AGG_SERIES:
                rec[f"fedavg/aggregator_{name}"][r] = out[name]
            for name in COUNTS:
                rec[f"fedavg/{name}"][r] = out[name]
            rec["metrics/loss"][r] = np.nan
        else:
            mine = [int(k) for k in sampled if int(k) in self.topology.my_clients]
            if r == cfg.fail_step and self.comm.rank == cfg.fail_rank:
                inject_failure(cfg, self.comm, r)  # testing aid: a client rank that dies or never answers
            if mine:
                WATCHDOG.arm(cfg.timeout, f"round {r}: waiting for the aggregator's model")
                self.host.run_round(r, mine, rec, r)
                WATCHDOG.disarm()
            else:
                rec["metrics/loss"][r] = np.nan
        rec["timing/step"][r] = time.perf_counter() - t0

    def _evaluate(self, r: int) -> None:
        if self.comm.rank != 0:
            return
        for i in range(len(self.run.layers)):
            np.copyto(self.staging.numpy[i], self.aggregator.layer(self.aggregator.values, i))
            self.staging.unpack(i, grads=False)
        acc, loss = evaluate(self.run.model, self.run.dataset, self.run.device)
        self.evals.append((r, acc, loss))

    def _should_stop(self, r: int) -> bool:
        if (r + 1) % STOP_CHECK_EVERY:
            return False
        self.stop.poll_file(self.cfg.stop_file)
        with WATCHDOG.guard(self.cfg.timeout, f"round {r}: agreeing on a stop with every rank"):
            return bool(self.comm.allreduce(1 if self.stop else 0, op=MPI.MAX))

    # ---- results ----------------------------------------------------------------------------------------
    def flush(self, status: str) -> None:
        with WATCHDOG.guard(self.cfg.timeout, "gathering results to rank 0"):
            self.rec.gather(self.done)
            peak = self.comm.gather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, root=0)
        if self.comm.rank == 0:
            self._write(status, self.rec.datasets(), peak)

    def _write_alone(self, status: str) -> None:
        """Rank 0 only, when client ranks stopped answering: rows gathered so far, rank 0's own rows since."""
        datasets = self.rec.datasets_with_root_rows(self.done)
        peak = [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024] + [0] * (self.comm.size - 1)
        self._write(status, datasets, peak)

    def _write(self, status: str, datasets: dict, peak: list) -> None:
        ev = np.array(self.evals, dtype=np.float64).reshape(-1, 3)
        datasets["metrics/eval_step"] = (ev[:, 0].astype(np.int64), "round")
        datasets["metrics/test_accuracy"] = (ev[:, 1], "1")
        datasets["metrics/test_loss"] = (ev[:, 2], "1")
        log = np.array(self.aggregator.log, dtype=np.float64).reshape(-1, 9)
        columns = ["round", "client", "rank", "samples", "status", "train_s", "injected_s", "loss", "arrival_s"]
        units = ["round", "1", "rank", "samples", "1", "s", "s", "1", "s"]
        for j, (name, unit) in enumerate(zip(columns, units)):
            datasets[f"fedavg/clients/{name}"] = (log[:, j], unit)
        datasets["fedavg/peak_rss"] = (np.array(peak, dtype=np.int64), "bytes")
        datasets |= run_datasets(self.run)
        datasets["timing/steps_done"] = (np.full(self.comm.size, self.done, dtype=np.int64), "rounds")
        attrs = self.attrs | {
            "status": status,
            "completed_steps": self.done,
            "stopped_by": self.stopped_by,
            "client_status_codes": STATUS_NAMES,
            "clients_of_rank": {str(k): list(v) for k, v in self.topology.clients_of_rank.items()},
        }
        results.write(self.run.out, attrs, datasets)

    def train(self) -> int:
        cfg, comm = self.cfg, self.comm
        comm.Barrier()
        t0 = time.perf_counter()
        side = 0.0
        progress = Progress(cfg.rounds, enabled=comm.rank == 0 and not cfg.quiet, unit="round")
        for r in range(cfg.rounds):
            self.round(r)
            self.done = r + 1
            if self.lost:
                self._evaluate(r)
                self._write_alone(f"failed: client ranks {self.lost} stopped answering in round {r}")
                WATCHDOG.abort(
                    f"client ranks {self.lost} did not answer within "
                    f"{cfg.client_timeout or cfg.timeout:g} s in round {r}: their clients were counted as dropped, "
                    f"the results of rounds 0..{r} were written to {self.run.out}; ending the job"
                )
            last = self.done == cfg.rounds
            stop = not last and self._should_stop(r)
            t = time.perf_counter()
            if (cfg.evaluation_interval and self.done % cfg.evaluation_interval == 0) or last or stop:
                self._evaluate(r)
            acc = self.evals[-1][1] if self.evals else None
            progress.update(acc=acc)
            if stop:
                self.stopped_by = self.stop.signal_name or "stop request on another rank"
                break
            if not last and self.done % cfg.flush_every == 0:
                self.flush("running")
            side += time.perf_counter() - t
        wall = time.perf_counter() - t0
        progress.close()
        self.attrs["train_wall_s"] = wall
        self.attrs["eval_and_io_s"] = side
        status = "stopped" if self.stopped_by else "complete"
        self.flush(status)
        if comm.rank == 0:
            from bench.strategies.fedavg.report import print_round_summary

            print_round_summary(self, wall - side, status)
        return 0

"""The aggregator's side of a FedAvg round (rank 0).

1. Send the global model, layer by layer, to every rank hosting a sampled client (non-blocking, from one snapshot:
   the global model does not change until the round is aggregated).
2. Take one message per sampled client, in arrival order (``Probe`` on any source): a dropped client's header
   alone; otherwise its header, then its model into one scratch buffer, folded at once into the running weighted
   sum (:class:`StreamingMean`): O(model) memory however many clients report. A message whose header arrives
   after ``--deadline`` seconds is still received (its host sent it) but left out of the average: it is *late*.
3. Global model <- server optimizer step on the weighted mean (plain FedAvg: the mean itself).
Every wait is under the watchdog: a client rank that never answers aborts the job with a message naming it.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from mpi4py import MPI

from bench.compress.uploads import DeltaDecoder
from bench.runtime.state import Stateful
from bench.runtime.watchdog import WATCHDOG
from bench.strategies.fedavg.choice import choose
from bench.strategies.fedavg.partials import HEAD, Report, report_tag
from bench.strategies.fedavg.protocol import (
    HEADER_LEN,
    ClientStatus,
    Head,
    header_tag,
    model_tag,
    plan_tag,
    update_tag,
)
from kernels.tags import tag_upper_bound
from kernels.waiting import probe

COUNTED_AS = {ClientStatus.OK: "finished", ClientStatus.DROPPED: "dropped", ClientStatus.LATE: "late"}


class Aggregator(Stateful):
    state_attributes = ("values", "log_rows")  # what a checkpoint keeps (bench.runtime.state)

    def __init__(self, cfg, comm: MPI.Comm, layers, initial: np.ndarray, topology, algorithm):
        self.cfg, self.comm, self.topology, self.algorithm = cfg, comm, topology, algorithm
        self.tag_ub = tag_upper_bound(comm)
        self.offsets = np.cumsum([0] + [layer.numel for layer in layers])
        self.values = initial.astype(np.float32).copy()  # the global model, flat
        self.snapshot = np.empty_like(self.values)
        self.scratch = np.empty_like(self.values)
        self.mean = algorithm.new_aggregate()
        self.extra = np.empty_like(self.values) if algorithm.extra_upload else None  # a client's dc_i (SCAFFOLD)
        self.extra_snapshot = np.empty_like(self.values) if algorithm.extra_download else None
        self.round, self.plan, self.returned = 0, None, np.arange(len(layers))  # FedLAMA's plan of the round
        self.log: list[tuple] = []  # (round, client, host rank, n_k, status, train_s, injected_s, loss, arrival_s)
        method = cfg.exchange_compression.method
        self.decoder = DeltaDecoder(method) if method else None

    def layer(self, values: np.ndarray, i: int) -> np.ndarray:
        return values[self.offsets[i] : self.offsets[i + 1]]

    def run_round(self, round_: int, sampled: np.ndarray, timeout: float, placement: dict[int, int]) -> dict:
        """One round (``placement``: client -> rank training it); returns its times (send, receive, aggregate,
        idle) and counts, and the client ranks lost."""
        hosts = sorted(set(placement.values()))
        self.round = round_
        t0 = time.perf_counter()
        sends = self._send_model(hosts)
        self.mean.reset()
        times = {"send": time.perf_counter() - t0, "receive": 0.0, "aggregate": 0.0, "idle": 0.0, "select": 0.0}
        counts = {"candidates": len(sampled), "finished": 0, "dropped": 0, "late": 0}
        if self.algorithm.candidates:  # power-of-choice: the hosts' losses first, then only the chosen train
            t = time.perf_counter()
            chosen = choose(self.comm, placement, self.cfg.federated.cohort, self.tag_ub, timeout)
            placement = {k: placement[k] for k in chosen}
            times["select"] = time.perf_counter() - t
        counts["sampled"] = len(placement)
        waiting = dict(placement)
        collect = self._collect_clients if self.cfg.aggregation == "client" else self._collect_reports
        lost = collect(round_, waiting, t0, timeout, times, counts)
        t = time.perf_counter()
        MPI.Request.Waitall([req for h, req in sends if h not in lost])  # a silent rank never takes its model
        if self.mean.weight > 0:  # a round where every sampled client dropped leaves the model as it was
            self._server_update(round_)
        self.algorithm.end_round(self.mean, self.snapshot)
        times["aggregate"] += time.perf_counter() - t
        WATCHDOG.disarm()
        return times | counts | {"lost": lost}

    def _server_update(self, round_: int) -> None:
        """The algorithm's server step; a robust rule with fewer updates than it needs (dropouts) leaves the global
        model as it was, and says so once per round on stderr."""
        try:
            self.algorithm.server_update(self.values, self.mean, round_)
        except ValueError as exc:
            print(f"syncbench: round {round_ + 1}: global model kept: {exc}", file=sys.stderr, flush=True)

    @property
    def log_rows(self) -> np.ndarray:
        """The per-client log as one float64 array (a checkpoint's form of :attr:`log`)."""
        return np.array(self.log, dtype=np.float64) if self.log else np.zeros((0, 0))

    @log_rows.setter
    def log_rows(self, rows: np.ndarray) -> None:
        self.log = [tuple(row) for row in np.asarray(rows).tolist()]

    def _send_model(self, hosts: list[int]) -> list[tuple[int, MPI.Request]]:
        """The global model, layer by layer, to every host of the round, from a snapshot (non-blocking); then the
        algorithm's extra download (SCAFFOLD's control variate), also from a snapshot."""
        np.copyto(self.snapshot, self.values)
        n_layers = len(self.offsets) - 1
        sends, fresh = [], range(n_layers)
        if self.algorithm.plans_layers:  # FedLAMA: the plan first, then only the layers averaged last round
            plan = self.algorithm.round_plan(self.round)
            self.plan = np.concatenate(plan).astype(np.int8)
            fresh, self.returned = np.flatnonzero(plan[0]), np.flatnonzero(plan[1])
            sends += [(h, self.comm.Isend(self.plan, h, plan_tag(self.tag_ub))) for h in hosts]
        sends += [
            (h, self.comm.Isend(self.layer(self.snapshot, i), h, model_tag(i, self.tag_ub)))
            for h in hosts
            for i in fresh
        ]
        if self.extra_snapshot is not None:
            np.copyto(self.extra_snapshot, self.algorithm.download_extra())
            tag = model_tag(n_layers, self.tag_ub)
            sends += [(h, self.comm.Isend(self.extra_snapshot, h, tag)) for h in hosts]
        return sends

    def _next_message(self, tag: int, waiting: dict, t0: float, timeout: float, status) -> bool:
        """Wait for the next message on ``tag`` from any rank; False when the client timeout ran out first
        (``--on-client-timeout drop``; with ``abort`` the watchdog ends the job, naming the ranks)."""
        if self.cfg.on_client_timeout == "drop":
            return probe(self.comm, MPI.ANY_SOURCE, tag, status, t0 + timeout)
        WATCHDOG.arm(timeout, f"aggregator waiting for clients on ranks {sorted(set(waiting.values()))}")
        probe(self.comm, MPI.ANY_SOURCE, tag, status)
        return True

    def _silent(self, round_: int, waiting: dict, t0: float, counts: dict) -> list[int]:
        for k, host in waiting.items():
            counts["dropped"] += 1
            self.log.append(
                (round_, k, host, 0.0, ClientStatus.SILENT, 0.0, 0.0, np.nan, time.perf_counter() - t0, 0.0, 0.0)
            )
        return sorted(set(waiting.values()))

    def _collect_clients(self, round_, waiting, t0, timeout, times, counts) -> list[int]:
        """Per-client aggregation: one message per sampled client, folded as it arrives."""
        head, status, n_layers = np.empty(HEADER_LEN), MPI.Status(), len(self.offsets) - 1
        while waiting:
            t = time.perf_counter()
            if not self._next_message(header_tag(self.tag_ub), waiting, t0, timeout, status):
                return self._silent(round_, waiting, t0, counts)
            source = status.Get_source()
            self.comm.Recv(head, source, header_tag(self.tag_ub))
            arrival = time.perf_counter()
            times["idle"] += arrival - t
            k, n_k, state = int(head[Head.CLIENT]), float(head[Head.SAMPLES]), ClientStatus(int(head[Head.STATUS]))
            waiting.pop(k)
            if state == ClientStatus.OK:
                self._receive_model(source, n_layers, k)
                t_recv = time.perf_counter()
                times["receive"] += t_recv - arrival
                if arrival - t0 > self.cfg.deadline:
                    state = ClientStatus.LATE
                    self.algorithm.fold_late(self.mean, self.scratch, head, self.extra)
                else:
                    self.algorithm.fold(self.mean, self.scratch, head, self.extra)
                    times["aggregate"] += time.perf_counter() - t_recv
            counts[COUNTED_AS[state]] += 1
            train = (head[Head.TRAIN_S], head[Head.INJECTED_S], head[Head.LOSS])
            phases = head[[Head.FORWARD_S, Head.BACKWARD_S]]
            self.log.append((round_, k, source, n_k, state, *train, arrival - t0, *phases))
        return []

    def _receive_model(self, source: int, n_layers: int, k: int) -> None:
        """Client k's model into ``scratch``: layer by layer (those it sends: FedLAMA's plan, its tier's trained
        layers), or one compressed delta decoded onto the model the round started from (the snapshot sent to the
        hosts)."""
        if self.decoder is None:
            layers = self.returned if self.algorithm.plans_layers else range(n_layers)
            trained, offsets = self.algorithm.trained(k), self.algorithm.upload_offsets(k)
            for i in layers if trained is None else [i for i in layers if trained[i]]:
                buf = self.layer(self.scratch, i) if offsets is None else self.scratch[offsets[i] : offsets[i + 1]]
                self.comm.Recv(buf, source, update_tag(i, self.tag_ub))
            if self.extra is not None:
                self.comm.Recv(self.extra, source, update_tag(n_layers, self.tag_ub))
            return
        status = MPI.Status()
        self.comm.Probe(source, update_tag(0, self.tag_ub), status)
        message = np.empty(status.Get_count(MPI.BYTE), dtype=np.uint8)
        self.comm.Recv(message, source, update_tag(0, self.tag_ub))
        layers = range(n_layers)
        self.decoder.decode(
            message, [self.layer(self.snapshot, i) for i in layers], [self.layer(self.scratch, i) for i in layers]
        )

    def _collect_reports(self, round_, waiting, t0, timeout, times, counts) -> list[int]:
        """Host or tree aggregation: one report per host (or one for the whole tree), partial sums added."""
        status, scratch = MPI.Status(), np.empty(self.values.size, dtype=np.float64)
        reports = len(set(waiting.values())) if self.cfg.aggregation == "host" else 1
        for _ in range(reports):
            t = time.perf_counter()
            if not self._next_message(report_tag(HEAD, self.tag_ub), waiting, t0, timeout, status):
                return self._silent(round_, waiting, t0, counts)
            t_msg = time.perf_counter()
            times["idle"] += t_msg - t
            report = Report(self.values.size)
            report.receive_from(self.comm, status.Get_source(), self.tag_ub, scratch)
            arrival = time.perf_counter()
            times["receive"] += arrival - t_msg
            self.mean.merge(report.partial.total, report.partial.weight)
            times["aggregate"] += time.perf_counter() - arrival
            for client, host, n_k, state, train_s, injected_s, loss, _ready, fwd, bwd in report.records:
                waiting.pop(int(client))
                counts[COUNTED_AS[ClientStatus(int(state))]] += 1
                self.log.append(
                    (round_, int(client), int(host), n_k, int(state), train_s, injected_s, loss, arrival - t0, fwd, bwd)
                )
        return []

"""``ps`` (sharded parameter server, ``--ps-mode sync|async``) and ``ssp`` (stale synchronous parallel).

Ranks 0..S-1 are servers (``--servers S``) and own the parameters, sharded by :func:`kernels.shard_map.shard_map`;
the W other ranks are workers that compute gradients on their partitions, push them piece by piece, and pull the
new parameters (worker side: :mod:`worker`; server policies: :mod:`server`, :mod:`events`).

``sync`` runs in the driver's lock-step loop (servers take part in its stop agreement and periodic results
flushes, like every synchronous strategy). ``async`` and ``ssp`` are *decoupled*: workers run at their own pace and
the run ends by messages (see :mod:`bench.run.decoupled`). With plain SGD on equal batches, sync PS with W workers
updates the parameters exactly as ``ring`` on W ranks does (one step on the mean gradient).
"""

from __future__ import annotations

import sys

import numpy as np
from mpi4py import MPI

from bench.comm.cuda_aware import GpuPath
from bench.compress.pieces import PieceEncoder
from bench.runtime.watchdog import WATCHDOG
from bench.strategies.base import DecoupledHooks, Strategy
from bench.strategies.freezing import make_freezer
from bench.strategies.overlap import OverlappedBuckets
from bench.strategies.ps.events import EventServer
from bench.strategies.ps.server import LAYERWISE, Server
from bench.strategies.ps.worker import PSWorker
from bench.workload.models import flat_parameters
from kernels.shard_map import shard_map
from kernels.topology import Role, Topology, TopologyError

SERVER_SERIES = ("server_receive", "server_apply", "server_send", "server_idle")
"""Per server step, in the order Server.serve_step and EventServer.rows give them."""


class PSStrategy(Strategy, DecoupledHooks):
    state_attributes = ("model", "server", "worker", "frozen_prefix")  # a server's shard and optimizer; a worker's
    # encoder; the frozen layers (--freeze)
    name = "ps"

    def __init__(self, cfg, comm, model, layers, device):
        super().__init__(cfg, comm, model, layers, device)
        topo = self.topology
        self.mode = self.policy()
        self.gpu_path = GpuPath.choose(cfg, device)  # the workers' (every rank chooses alike: the file says it)
        if self.gpu_path.warning(device.type) and comm.rank == 0:
            print(self.gpu_path.warning(device.type), file=sys.stderr, flush=True)
        shapes = [tuple(p.shape) for layer in layers for p in layer.params]  # the flat order of flat_parameters
        whole = [int(np.prod(shape, dtype=np.int64)) for shape in shapes] if cfg.optimizer in LAYERWISE else None
        try:
            self.smap = shard_map([layer.numel for layer in layers], len(topo.servers), whole=whole)
        except ValueError as exc:
            raise TopologyError(f"--servers {len(topo.servers)}: {exc}") from None
        self.worker_comm = self.comm.Split(0 if topo.role == Role.WORKER else 1, topo.rank)
        self.server: Server | None = None
        self.worker: PSWorker | None = None
        if topo.role == Role.SERVER:
            initial = flat_parameters(layers)
            index = topo.servers.index(topo.rank)
            if self.lockstep:
                self.server = Server(cfg, self.comm, index, topo.workers, self.smap, initial, shapes)
            else:
                budget = cfg.steps * len(topo.workers)
                self.server = EventServer(
                    cfg, self.comm, index, topo.workers, self.smap, initial, shapes, self.mode, cfg.staleness, budget
                )
        else:
            compression = cfg.exchange_compression
            encoder = None
            if compression.on:
                encoder = PieceEncoder(compression.method, compression.error_feedback, cfg.seed, comm.rank)
            headers = not self.lockstep
            fault = comm.rank == cfg.overlap_fault_rank
            launch = list(reversed(range(len(layers))))[:: -1 if fault else 1]  # the overlap's push order
            push_order = launch if cfg.overlap else None
            self.worker = PSWorker(
                self.comm, topo.servers, layers, device, self.smap, headers, encoder, self.gpu_path,
                cfg.buckets_in_flight, push_order,
            )  # fmt: skip
            self._exchanges_from(0)
        self.series: dict[str, np.ndarray] = {}
        self.freezer = make_freezer(cfg.freezing, layers, cfg.steps)

    def _exchanges_from(self, first: int) -> None:
        """A worker's pushes and pulls of the layers from ``first`` on (the others are frozen: ``--freeze``), and
        with ``--overlap`` each of those layers' push as its gradient is ready, last layer first."""
        self._push = [e for e in self.worker.push_exchanges() if e.layers[0] >= first]
        self._pull = [e for e in self.worker.pull_exchanges() if not e.layers or e.layers[0] >= first]
        if self.cfg.overlap:
            if self.overlap is not None:
                self.overlap.close()
            backward_order = [(i,) for i in reversed(range(first, len(self.layers)))]
            fault = self.world.rank == self.cfg.overlap_fault_rank
            send = lambda g: self.worker.push_timed(backward_order[g][0])  # noqa: E731
            self.overlap = OverlappedBuckets(self.layers, backward_order, send, fault, "ps/push", self.device)

    # ---- freezing (--freeze fixed:K@STEP, sync) ---------------------------------------------------------------
    def _freeze_before(self, step: int) -> None:
        """At the start of row ``step``, on servers and workers alike: the freeze decided after row ``step - 1``
        (a fixed step: no message needed). From then on the frozen layers are neither pushed nor pulled, and the
        servers hold their values."""
        if self.freezer is not None:
            if step >= 1 and self.freezer.decide(step - 1):
                self.refrozen()
            self._frozen_during = self.freezer.frozen

    def refrozen(self) -> None:
        first = self.freezer.frozen
        if self.server is not None:
            self.server.freeze_layers(first)
        if self.worker is not None:
            self.worker.active_from(first)
            self._exchanges_from(first)

    def policy(self) -> str:
        return self.cfg.ps_mode

    @property
    def lockstep(self) -> bool:
        return self.mode == "sync"

    def make_topology(self, rank, size):
        return Topology.parameter_server(rank, size, self.cfg.servers)

    # ---- series ------------------------------------------------------------------------------------------
    def declare(self, rec):
        L = (len(self.layers),)
        self.rec = rec
        if self.cfg.exchange_compression.on:  # every rank declares the same series; workers fill them
            rec.add("timing/compress", "s", L)
            rec.add("compress/sent_bytes", "bytes", L, dtype=np.int64)
            rec.add("compress/dense_bytes", "bytes", L, dtype=np.int64)
            rec.add("compress/residual_norm", "1")
            if self.worker is not None:
                self.worker.rec = rec
        for kind in ("push", "pull"):
            rec.add(f"ps/{kind}", "s", L)
        if self.cfg.overlap:  # every rank declares it (the gather matches series by order); workers fill it
            rec.add("timing/exposed", "s", L)
        for name in (*SERVER_SERIES, "blocked"):
            rec.add(f"ps/{name}", "s")
        rec.add("ps/clock_spread", "clocks")
        if self.freezer is not None:
            self.freezer.declare(rec, self.cfg.freeze_cache)

    # ---- worker hooks --------------------------------------------------------------------------------------
    def before_step(self, step):
        """The replies that let this step start: how far ahead of the slowest worker, and how long held back."""
        self.worker.begin_step(step)
        self._freeze_before(step)
        if not self.lockstep:
            self.rec["ps/clock_spread"][step] = self.worker.clock_spread
            self.rec["ps/blocked"][step] = self.worker.blocked_s
        return []

    def after_backward(self, step):
        return [] if self.overlap else self._push

    def barrier_for_wait(self, step):
        return self.worker_comm if self.lockstep else None

    def apply_update(self, step):
        """The servers apply updates; a worker's model changes only by pulling."""

    def after_update(self, step):
        return self._pull

    # ---- server side -------------------------------------------------------------------------------------
    def serve_step(self, step):
        """Lock-step (sync) server: one step, its times into the recorder."""
        self._freeze_before(step)
        if self.freezer is not None:
            self.record(self.rec, step)
        row = self.server.serve_step(step)
        for name, value in zip(SERVER_SERIES, row):
            self.rec[f"ps/{name}"][step] = value
        return sum(row)

    def request_stop(self, requested: bool) -> None:
        self.worker.stop_request = requested

    @property
    def run_is_over(self) -> bool:
        return self.worker.stop_seen

    def say_goodbye(self, steps_done: int) -> None:
        self.worker.say_bye(steps_done)

    def rejoin(self) -> None:
        """A worker of a resumed decoupled run, before its first step (:meth:`PSWorker.rejoin`)."""
        self.worker.rejoin()

    def finish_serving(self, checkpointed: bool) -> None:
        """A decoupled server after its last worker's goodbye: ssp's gradients of incomplete clocks are applied,
        unless a checkpoint keeps them pending for the resumed run."""
        if self.server is not None and not self.lockstep and not checkpointed:
            self.server.apply_leftovers()

    def serve_events(self, stop_flag, timeout: float, on_row=None) -> int:
        """Decoupled server: serve until every worker has said goodbye; returns its number of rows."""
        self.server.serve(stop_flag, timeout, on_row)
        return self.record_rows()

    def record_rows(self) -> int:
        """Decoupled server: copy its rows so far into the recorder (at the end, and for snapshots); their count."""
        rows = self.server.rows
        self.rec.ensure(len(rows))
        for k, row in enumerate(rows):
            for name, value in zip(SERVER_SERIES, row):
                self.rec[f"ps/{name}"][k] = value
            self.rec["timing/step"][k] = sum(row)
        return len(rows)

    def collect_model(self, timeout: float) -> None:
        """Decoupled modes: the servers' final parameters to the evaluating worker (whose pulled copy may be older
        than the last updates)."""
        target = self.topology.eval_rank
        with WATCHDOG.guard(timeout, "sending the final parameters to the evaluating worker"):
            if self.server is not None:
                MPI.Request.Waitall(self.server.send_values(target, self.server.values))
            elif self.world.rank == target:
                for exchange in self._pull[1:]:
                    exchange.run()

    def gather_datasets(self) -> dict:
        """Collective: every applied update's staleness, from the servers to rank 0."""
        empty = (np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
        logs = self.comm.gather(self.server.log_for_gather() if self.server else empty, root=0)
        if self.comm.rank != 0:
            return {}
        server = np.concatenate([np.full(len(log), rank) for rank, (log, _) in enumerate(logs)]).astype(np.float64)
        epoch = np.concatenate([e for _, e in logs])
        order = np.lexsort((np.arange(epoch.size), server, epoch))  # by epoch, then server, then position
        arr = np.column_stack([server, np.concatenate([log for log, _ in logs])])[order]
        units = "clocks" if self.mode != "async" else "updates"
        return {
            "ps/updates/server": (arr[:, 0].astype(np.int64), "rank"),
            "ps/updates/worker": (arr[:, 1].astype(np.int64), "rank"),
            "ps/updates/step": (arr[:, 2].astype(np.int64), "step"),
            "ps/updates/staleness": (arr[:, 3], units),
        }

    def describe(self):
        cfg = self.cfg
        return (
            super().describe()
            | {
                "mode": self.mode,
                "servers": cfg.servers,
                "staleness_bound": cfg.staleness if self.mode == "ssp" else (0 if self.lockstep else -1),
                "update_budget": cfg.steps * len(self.topology.workers),
                "shard_map": self.smap.describe(),
            }
            | self.gpu_path.describe(cfg, 1 if cfg.overlap else None)  # --overlap pushes copy no layer ahead
        )


class SSPStrategy(PSStrategy):
    name = "ssp"

    def policy(self) -> str:
        return "ssp"

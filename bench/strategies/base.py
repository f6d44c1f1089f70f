"""The Strategy interface: what a way of keeping replicas in step tells the schedules in :mod:`bench.run`.

A strategy declares its ``schedule`` (``lockstep``, ``decoupled`` or ``rounds``) and its layout (a Topology),
and hands the schedule timed exchanges around each step. Ranks that do not compute (parameter servers) serve
instead: :meth:`Strategy.serve_step` in lock-step, the :class:`DecoupledHooks` in decoupled runs. The rounds
schedule talks to :class:`bench.strategies.fedavg.strategy.FedAvgStrategy` through its round hooks.
"""

from __future__ import annotations

import contextlib
import dataclasses

import torch
from mpi4py import MPI

from bench.comm.emulated_link import emulated
from bench.comm.exchange import Exchange
from bench.runtime.launch import node_ids
from bench.runtime.state import Stateful
from bench.workload.models import Layer
from kernels.topology import Topology, virtual_nodes


class Strategy(Stateful):
    name = "base"
    state_attributes: tuple[str, ...] = ("model", "optimizer")
    """What a checkpoint keeps on each rank (:mod:`bench.runtime.state`; attributes a rank lacks are skipped)."""
    needs_full_batches = True  # every computing rank's partition must hold one --batch-size batch
    freezer = None  # ``--freeze`` (:class:`bench.strategies.freezing.Freezer`) where the strategy takes it
    overlap = None
    """Set by a strategy whose gradients leave during ``backward()`` (``ring --overlap``, ``ddp``): an object with
    ``begin()`` (before backward) and ``finish()`` (after it: waits, returns the step's
    :class:`bench.measure.buckets.BucketTiming` list). The stepper then records the buckets' communication and
    exposed time instead of running ``after_backward`` exchanges and the ``--sync-wait`` barrier."""

    def __init__(self, cfg, comm: MPI.Comm, model: torch.nn.Module, layers: list[Layer], device: torch.device):
        self.cfg = cfg
        self.world = comm
        self.model = model
        self.layers = layers
        self.device = device
        nodes = virtual_nodes(comm.size, cfg.ranks_per_node) if cfg.ranks_per_node else node_ids(comm)
        self.topology = dataclasses.replace(self.make_topology(comm.rank, comm.size), nodes=nodes)
        # strategy traffic never mixes with set-up or gather traffic; with --emulate-link it crosses nodes paced
        self.comm = emulated(comm.Dup(), cfg.emulate_link, self.topology.nodes)

    @property
    def schedule(self) -> str:
        """``lockstep``, ``decoupled`` or ``rounds`` (:mod:`bench.run`): declared in the strategy's
        :class:`bench.strategies.Facts`, with ``--ps-mode``."""
        return self.cfg.schedule

    # ---- freezing (``--freeze``) ------------------------------------------------------------------------
    @property
    def frozen_prefix(self) -> int:
        """Layers frozen so far: a checkpoint keeps it (name it in ``state_attributes``); restoring it freezes them
        again and calls :meth:`refrozen`."""
        return self.freezer.frozen if self.freezer is not None else 0

    @frozen_prefix.setter
    def frozen_prefix(self, value) -> None:
        if self.freezer is not None and int(value) > self.freezer.frozen:
            self.freezer.freeze_to(int(value))
            self.refrozen()

    def refrozen(self) -> None:
        """After a checkpoint's frozen prefix was restored: rebuild what depends on the active layers."""

    # ---- layout -------------------------------------------------------------------------------------
    def make_topology(self, rank: int, size: int) -> Topology:
        """The rank layout; its layout queries (computes, partitions, data_part, eval_rank) are the Topology's."""
        raise NotImplementedError

    # ---- hooks around one step ----------------------------------------------------------------------
    def before_step(self, step: int) -> list[Exchange]:
        """Communication before compute (e.g. pulling parameters). Default: none."""
        return []

    def after_backward(self, step: int) -> list[Exchange]:
        """Communication of gradients. Must be provided."""
        raise NotImplementedError

    def barrier_for_wait(self, step: int) -> MPI.Comm | None:
        """Communicator whose barrier, just before this step's communication, measures rank skew as wait
        (synchronous strategies); None: no barrier this step."""
        return self.comm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's output (``ddp`` runs it through its wrapper)."""
        return self.model(x)

    def resumed(self) -> None:
        """Collective, after every rank loaded its checkpoint piece: work a resumed run does before its first row
        (``ddp`` rebuilds DDP's buckets); nothing by default."""

    def accumulating(self):
        """Context for a micro-batch's forward and backward that is not the step's last (``--accumulate-steps``):
        gradients accumulate, nothing is communicated. Our overlapped buckets are idle unless ``overlap.begin()``
        armed them, so the default does nothing; ``ddp`` enters DDP's ``no_sync``."""
        return contextlib.nullcontext()

    def apply_update(self, step: int) -> None:
        """Apply the optimizer step."""
        raise NotImplementedError

    def record(self, rec, step: int) -> None:
        """After the update of row ``step``: the strategy's own per-step values into the Recorder (with
        ``--freeze``, the freezer's series: ``_frozen_during`` is the prefix the step trained with)."""
        if self.freezer is not None:
            self.freezer.record(rec, step, self._frozen_during)

    def after_update(self, step: int) -> list[Exchange]:
        """Communication after the update (e.g. parameter averaging). Default: none."""
        return []

    def serve_step(self, step: int) -> None:
        """A lock-step rank that does not compute (a sync parameter server): serve step ``step``."""
        raise NotImplementedError(f"{self.name}: this rank neither computes nor serves")

    def gather_datasets(self) -> dict:
        """Collective over the world: extra datasets for the results file, returned on rank 0."""
        return {}

    def declare(self, rec) -> None:
        """Add strategy-specific series to the Recorder (same names and order on every rank)."""

    def describe(self) -> dict:
        """Strategy-specific attributes for the results file."""
        return {"topology": self.topology.describe()}


class DecoupledHooks:
    """What the decoupled schedule (:mod:`bench.run.decoupled`) needs from a strategy whose workers run at their
    own pace and whose run ends by messages (``ps --ps-mode async``, ``ssp``)."""

    def request_stop(self, requested: bool) -> None:
        """Worker: ask the servers to end the run (a signal or stop file on this rank); sent with the next push."""
        raise NotImplementedError

    @property
    def run_is_over(self) -> bool:
        """Worker: a server's last reply said the run is over."""
        raise NotImplementedError

    def say_goodbye(self, steps_done: int) -> None:
        """Worker: tell every server it will send nothing more."""
        raise NotImplementedError

    def serve_events(self, stop_flag, timeout: float, on_row=None) -> int:
        """Server: serve until every worker has said goodbye; returns the rows recorded."""
        raise NotImplementedError

    def record_rows(self) -> int:
        """Server: copy its rows so far into the Recorder (for snapshots and at the end); their count."""
        raise NotImplementedError

    def rejoin(self) -> None:
        """Worker of a resumed run, before its first step: wait until the servers let it go on."""
        raise NotImplementedError

    def finish_serving(self, checkpointed: bool) -> None:
        """Every rank, after the last goodbye: the updates still held back are applied (not when a checkpoint
        keeps them for the resumed run)."""
        raise NotImplementedError

    def collect_model(self, timeout: float) -> None:
        """Collective at the end: the final parameters to the evaluating rank."""
        raise NotImplementedError

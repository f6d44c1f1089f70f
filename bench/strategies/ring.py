"""``ring``: synchronous data-parallel SGD, gradients averaged per layer (or bucket) by ring all-reduce.

All replicas start from the same seed and apply the same averaged gradient, so they stay identical; with
equal per-rank batches this equals one process stepping on the concatenation of all ranks' batches. With
``--overlap`` the same exchanges run during the backward pass (:mod:`bench.strategies.overlap`); with
``--compress`` each bucket is averaged compressed (:mod:`bench.compress.exchange`).
"""

from __future__ import annotations

import sys
from dataclasses import astuple

from bench.comm.calibrate import measure_links
from bench.comm.cuda_aware import GpuPath
from bench.comm.pipeline import BucketPipeline, make_copies
from bench.comm.staging import HostStaging, bucket_groups
from bench.compress.exchange import CompressedAveraging
from bench.compress.on_device import DeviceCompressedAveraging
from bench.compress.where import compress_place
from bench.strategies.averaging import average_exchanges
from bench.strategies.base import Strategy
from bench.strategies.freezing import make_freezer
from bench.strategies.overlap import HookDrivenBuckets, OverlappedBuckets, RingBucketAverage
from bench.workload.optim import make_optimizer, set_lr
from kernels.chosen import ModelChosenAllreduce
from kernels.hierarchical import HierarchicalAllreduce
from kernels.ring_allreduce import RingAllreduce
from kernels.topology import Topology


class RingStrategy(Strategy):
    name = "ring"
    state_attributes = ("model", "optimizer", "compressed", "frozen_prefix")

    def __init__(self, cfg, comm, model, layers, device):
        super().__init__(cfg, comm, model, layers, device)
        self.allreduce = self.make_allreduce(cfg.allreduce)
        self.gpu_path = GpuPath.choose(cfg, device)
        warning = self.gpu_path.warning(device.type)
        if warning and comm.rank == 0:
            print(warning, file=sys.stderr, flush=True)
        self.staging = HostStaging(layers, device, bucket_groups(layers, cfg.bucket_mb), self.gpu_path.in_place)
        self.optimizer = make_optimizer(model.parameters(), cfg)
        self.compressed = None
        self.freezer = make_freezer(cfg.freezing, layers, cfg.steps)
        self._exchanges = self.make_exchanges()  # only what the run uses: each pipeline holds device buffers
        if cfg.overlap:
            self.overlap = self.make_overlap()

    def make_overlap(self):
        """``--overlap``: the buckets averaged during the backward pass, on a thread or from the hooks."""
        fault = self.comm.rank == self.cfg.overlap_fault_rank
        order = list(range(len(self.staging.groups)))[:: -1 if fault else 1]  # the overlap's launch order
        send = RingBucketAverage(self.staging, self.allreduce, self.pipeline(order))
        if self.cfg.overlap_progress == "hooks":
            return HookDrivenBuckets(send, fault)
        return OverlappedBuckets(self.layers, self.staging.groups, send, fault, device=self.device)

    def refrozen(self) -> None:
        self._rebuild_buckets()

    def _rebuild_buckets(self) -> None:
        """The exchanges over the active layers only: buckets regrouped from the first active layer on, so frozen
        layers are neither packed nor all-reduced."""
        first = self.freezer.frozen
        groups = [tuple(first + i for i in g) for g in bucket_groups(self.layers[first:], self.cfg.bucket_mb)]
        self.staging = HostStaging(self.layers, self.device, groups, self.gpu_path.in_place)
        self._exchanges = self.make_exchanges()
        if self.overlap is not None:
            self.overlap.close()
            self.overlap = self.make_overlap()

    def make_exchanges(self) -> list:
        """The exchanges after the backward pass: the compressed average, the plain one, or none (--overlap)."""
        self.compressed = self.compressed_averaging(self.cfg)
        if self.compressed is not None:
            return self.compressed.exchanges()
        return [] if self.cfg.overlap else average_exchanges(self.staging, self.allreduce, True, self.pipeline())

    def pipeline(self, order: list[int] | None = None) -> BucketPipeline:
        """The copies of the staged buckets, ``--buckets-in-flight`` of them ahead (:mod:`bench.comm.pipeline`)."""
        copies = make_copies(self.staging, self.device, self.gpu_path.in_place)
        return BucketPipeline(self.staging, copies, self.cfg.buckets_in_flight, order)

    def make_allreduce(self, how: str):
        """``--allreduce``: the flat ring, the hierarchical kernel, or per buffer the one the two-level model
        prices lower on the links measured now (a collective: every rank builds its strategy here)."""
        if how == "hierarchical":
            return HierarchicalAllreduce(self.comm, self.topology)
        if how == "auto":
            self.links = measure_links(self.comm, self.topology.node_groups)
            self.comm.take_across()  # the calibration's bytes and time are not the run's
            self.comm.take_across_seconds()
            return ModelChosenAllreduce(self.comm, self.topology, *self.links)
        return RingAllreduce(self.comm, self.topology)

    def compressed_averaging(self, cfg, anchored: bool = False, after=None) -> CompressedAveraging | None:
        """``--compress``: the averaging that replaces the plain one (None without compression)."""
        compression = cfg.exchange_compression
        if not compression.on:
            return None
        method, feedback = compression.method, compression.error_feedback
        if not anchored and compress_place(cfg, compression, self.device.type) == "device":
            return DeviceCompressedAveraging(self.staging, self.allreduce, method, feedback, cfg.seed, self.device)
        return CompressedAveraging(self.staging, self.allreduce, method, feedback, cfg.seed, anchored, after)

    def make_topology(self, rank, size):
        return Topology.ring(rank, size)

    def after_backward(self, step):
        if self.compressed is not None:
            self.compressed.step = step
        return [] if self.overlap else self._exchanges

    def apply_update(self, step):
        set_lr(self.optimizer, self.cfg, step, self.cfg.steps)
        self.optimizer.step()
        if self.freezer is not None:
            self._frozen_during = self.freezer.frozen
            self.freeze_point(step)

    def freeze_point(self, step: int) -> None:
        """After the update: at a freeze point, the decision from the gradients just applied (all-reduced: the
        same on every rank), and the buckets over the layers left."""
        if self.freezer.decide(step):
            self._rebuild_buckets()

    def declare(self, rec) -> None:
        if self.freezer is not None:
            self.freezer.declare(rec, self.cfg.freeze_cache)
        if self.overlap:
            rec.add("timing/exposed", "s", (len(self.layers),))
        if self.compressed is not None:
            self.compressed.declare(rec)

    def describe(self):
        in_flight = 1 if self.compressed is not None else None  # compressed buckets go one at a time
        info = {"buckets": [list(g) for g in self.staging.groups]} | self.gpu_path.describe(self.cfg, in_flight)
        if isinstance(self.allreduce, ModelChosenAllreduce):  # what auto measured, and took for each bucket
            inside, across = self.links
            info["allreduce_links"] = {"inside": astuple(inside), "across": astuple(across)}
            info["allreduce_chosen"] = [self.allreduce.choice(b.nbytes) for b in self.staging.numpy]
        if self.compressed is not None:
            info |= {"compress": self.compressed.compressor.spec(), "error_feedback": self.compressed.feedback.enabled}
            info |= {"compress_on": "device" if isinstance(self.compressed, DeviceCompressedAveraging) else "host"}
            info |= {"compress_wire": self.compressed.wire_plan()}
        return super().describe() | info

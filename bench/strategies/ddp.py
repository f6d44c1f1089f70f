"""``ddp``: PyTorch's DistributedDataParallel on the gloo backend, in the same harness as ``ring``: the reference
readers know, with the same models, data, partitions, per-layer compute timing and results file.

DDP (Li et al., VLDB 2020) buckets gradients in reverse parameter order (``--bucket-mb``, 0: its default 25 MiB;
its first bucket is 1 MiB, fixed inside torch), starts a bucket's all-reduce as soon as the bucket's last gradient is
ready, and makes ``backward()`` return only once every bucket is averaged. Its communication is timed per bucket by
a DDP communication hook: the default hook's all-reduce (sum, then / world size), timed from launch to the
completion of its future, on whichever thread completes it, from the completion of the bucket before it if that
came later (gloo runs several at once: :func:`bench.measure.buckets.serialised`); the time is shared among the
bucket's layers by bytes and the exposed part is derived as for ``ring --overlap`` (:mod:`bench.measure.buckets`).
Gloo's all-reduce algorithm is its own and not observable: ``timing/comm_bytes`` records what a bandwidth-optimal
ring would send for the bucket (``kernels.reference.ring_elements_sent``), and results/README.md says so.

The process group's rendezvous comes from MPI (:func:`bench.runtime.gloo.init_gloo`); MPI still carries every
other message of the run (set-up, stop agreement, results).
"""

from __future__ import annotations

import time

from bench.measure.buckets import BucketTiming, byte_shares, serialised
from bench.runtime.gloo import init_gloo
from bench.strategies.base import Strategy
from bench.workload.optim import make_optimizer
from kernels.reference import ring_elements_sent
from kernels.topology import Topology

DDP_DEFAULT_BUCKET_MB = 25.0


class DdpBuckets:
    """The communication hook's timings of one step (the ``overlap`` object the stepper reads)."""

    series = None  # no strategy series beyond timing/comm

    def __init__(self, layers, rank: int, size: int):
        self.rank, self.size = rank, size
        self._layer_of = {id(p): (layer.index, p.numel() * p.element_size()) for layer in layers for p in layer.params}
        self._timings: list[BucketTiming] = []

    def begin(self) -> None:
        self._timings = []

    def finish(self) -> list[BucketTiming]:
        """DDP's ``backward()`` returned only after every bucket's future completed: nothing to wait for. Gloo has
        several of them in flight at once, so their times are serialised (:func:`serialised`)."""
        return serialised(self._timings)

    def hook(self, dist):
        """A DDP communication hook: DDP's default all-reduce (sum, then divide), timed."""

        def allreduce(_state, bucket):
            tensor = bucket.buffer()
            layer_bytes: dict[int, int] = {}
            for p in bucket.parameters():
                layer, nbytes = self._layer_of[id(p)]
                layer_bytes[layer] = layer_bytes.get(layer, 0) + nbytes
            sent = ring_elements_sent(tensor.numel(), self.size, self.rank) * tensor.element_size()
            start = time.perf_counter()

            def done(fut):
                end = time.perf_counter()
                self._timings.append(BucketTiming(byte_shares(layer_bytes), start, start, end, end, sent))
                return fut.value()[0].div_(self.size)

            return dist.all_reduce(tensor, async_op=True).get_future().then(done)

        return allreduce


class DdpStrategy(Strategy):
    name = "ddp"

    def __init__(self, cfg, comm, model, layers, device):
        super().__init__(cfg, comm, model, layers, device)
        from torch.nn.parallel import DistributedDataParallel

        dist = init_gloo(comm, cfg.timeout)
        self.bucket_mb = cfg.bucket_mb or DDP_DEFAULT_BUCKET_MB
        self.ddp = DistributedDataParallel(model, bucket_cap_mb=self.bucket_mb)
        self.overlap = DdpBuckets(layers, comm.rank, comm.size)
        self.ddp.register_comm_hook(None, self.overlap.hook(dist))
        self.optimizer = make_optimizer(model.parameters(), cfg)

    def make_topology(self, rank, size):
        return Topology.ring(rank, size)

    def forward(self, x):
        return self.ddp(x)

    def after_backward(self, step):
        return []  # DDP reduced the gradients inside backward()

    def barrier_for_wait(self, step):
        return None  # no communication phase after backward to measure skew before

    def apply_update(self, step):
        self.optimizer.step()

    def declare(self, rec) -> None:
        rec.add("timing/exposed", "s", (len(self.layers),))

    def describe(self):
        return super().describe() | {"backend": "gloo", "bucket_mb": self.bucket_mb}

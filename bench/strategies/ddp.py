"""``ddp``: PyTorch's DistributedDataParallel in the same harness as ``ring``: the reference readers know, with the
same models, data, partitions, per-layer compute timing and results file. Backend: gloo on CPU; on CUDA, NCCL where
torch has it and every rank of a node has a GPU of its own (NCCL refuses two ranks on one GPU), gloo otherwise.

DDP (Li et al., VLDB 2020) buckets gradients in reverse parameter order (``--bucket-mb``, 0: its default 25 MiB;
its first bucket is 1 MiB, fixed inside torch), starts a bucket's all-reduce as soon as the bucket's last gradient is
ready, and makes ``backward()`` return only once every bucket is averaged. Its communication is timed per bucket by
a DDP communication hook: the default hook's all-reduce (sum, then / world size), timed from launch to the
completion of its future, on whichever thread completes it, from the completion of the bucket before it if that
came later (gloo runs several at once: :func:`bench.measure.buckets.serialised`); the time is shared among the
bucket's layers by bytes and the exposed part is derived as for ``ring --overlap`` (:mod:`bench.measure.buckets`).
Gloo's all-reduce algorithm is its own and not observable: ``timing/comm_bytes`` records what a bandwidth-optimal
ring would send for the bucket (``kernels.reference.ring_elements_sent``), and results/README.md says so.
On CUDA the hook's clock readings are CUDA events (launch on the computing stream; completion in the future's
callback, whose stream waits for the all-reduce), turned into host time after the step
(:meth:`bench.measure.timing.CudaClock.host_times`).

The process group's rendezvous comes from MPI (:func:`bench.runtime.gloo.init_gloo`); MPI still carries every
other message of the run (set-up, stop agreement, results).
"""

from __future__ import annotations

import torch

from bench.measure.buckets import BucketTiming, byte_shares, serialised
from bench.measure.timing import make_clock
from bench.runtime.gloo import init_process_group
from bench.runtime.launch import node_local
from bench.strategies.base import Strategy
from bench.strategies.freezing import make_freezer
from bench.workload.optim import make_optimizer, set_lr
from bench.workload.stages import without_cache
from kernels.reference import ring_elements_sent
from kernels.topology import Topology

DDP_DEFAULT_BUCKET_MB = 25.0


class DdpBuckets:
    """The communication hook's timings of one step (the ``overlap`` object the stepper reads)."""

    series = None  # no strategy series beyond timing/comm

    def __init__(self, layers, rank: int, size: int, device: torch.device):
        self.rank, self.size = rank, size
        self.clock = make_clock(device.type)
        self._layer_of = {id(p): (layer.index, p.numel() * p.element_size()) for layer in layers for p in layer.params}
        self._marks: list[tuple[dict[int, float], object, object, int]] = []  # (shares, launch, completion, sent)
        self.silent = False

    def begin(self) -> None:
        self._marks = []

    def finish(self) -> list[BucketTiming]:
        """DDP's ``backward()`` returned only after every bucket's future completed: nothing to wait for (on CUDA
        the clock marks are resolved here). Several buckets are in flight at once, so their times are serialised
        (:func:`serialised`)."""
        times = self.clock.host_times([m for _, start, end, _ in self._marks for m in (start, end)])
        timings = []
        for k, (shares, _, _, sent) in enumerate(self._marks):
            start, end = times[2 * k], times[2 * k + 1]
            timings.append(BucketTiming(shares, start, start, end, end, sent))
        return serialised(timings)

    def hook(self, dist):
        """A DDP communication hook: DDP's default all-reduce (sum, then divide), timed."""

        def allreduce(_state, bucket):
            tensor = bucket.buffer()
            layer_bytes: dict[int, int] = {}
            for p in bucket.parameters():
                layer, nbytes = self._layer_of[id(p)]
                layer_bytes[layer] = layer_bytes.get(layer, 0) + nbytes
            sent = ring_elements_sent(tensor.numel(), self.size, self.rank) * tensor.element_size()
            if self.silent:  # the bucket layout's replay after a resume: no communication, nothing timed
                return _completed(tensor)
            start = self.clock.mark()

            def done(fut):
                self._marks.append((byte_shares(layer_bytes), start, self.clock.mark(), sent))
                return fut.value()[0].div_(self.size)

            return dist.all_reduce(tensor, async_op=True).get_future().then(done)

        return allreduce


def _completed(tensor: torch.Tensor) -> torch.futures.Future:
    future = torch.futures.Future()
    future.set_result(tensor)
    return future


class DdpStrategy(Strategy):
    """DDP's first iteration after construction all-reduces every gradient in one bucket, in parameter order; it
    then rebuilds its buckets in the order the gradients became ready (torch.nn.parallel.DistributedDataParallel,
    ``_rebuild_buckets``). At 3+ ranks gloo's sum order depends on where an element lies in its bucket, so a run
    resumed from a checkpoint would sum its first step otherwise than the run that was never stopped. A checkpoint
    therefore keeps a two-sample input of the model's shape (``layout_input``), and a resumed DDP replays one
    forward and backward on it without communication (model, buffers and random state restored): its buckets are
    rebuilt before the first real step, as the uninterrupted run's were (tests/mpi/test_checkpoint.py: bit for bit
    at 1-4 ranks)."""

    name = "ddp"
    state_attributes = ("model", "optimizer", "layout_input", "steps_since_build", "frozen_prefix")

    def __init__(self, cfg, comm, model, layers, device):
        super().__init__(cfg, comm, model, layers, device)
        self.backend = pick_backend(comm, device)
        dist = init_process_group(comm, cfg.timeout, self.backend)
        self.bucket_mb = cfg.bucket_mb or DDP_DEFAULT_BUCKET_MB
        self.overlap = DdpBuckets(layers, comm.rank, comm.size, device)
        self._dist = dist
        self.ddp = self._wrap()
        self.optimizer = make_optimizer(model.parameters(), cfg)
        self.layout_input: torch.Tensor | None = None
        self.steps_since_build = 0  # steps the current DDP wrapper took (its buckets are rebuilt after the first)
        self.freezer = make_freezer(cfg.freezing, layers, cfg.steps)
        self._rewrap_on_resume = False

    def _wrap(self):
        """A DDP wrapper over the parameters that require gradients now (a collective: its constructor broadcasts
        rank 0's parameters and buffers, equal on every rank here), with our timed communication hook."""
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device] if self.device.type == "cuda" else None
        ddp = DistributedDataParallel(self.model, device_ids=ids, bucket_cap_mb=self.bucket_mb)
        ddp.register_comm_hook(None, self.overlap.hook(self._dist))
        return ddp

    def refrozen(self) -> None:
        self._rewrap_on_resume = True  # a collective: in resumed(), once every rank has loaded its piece

    def make_topology(self, rank, size):
        return Topology.ring(rank, size)

    def forward(self, x):
        if self.layout_input is None:
            self.layout_input = torch.zeros_like(x[:2])
        return self.ddp(x)

    def resumed(self) -> None:
        """Collective, once every rank has loaded its piece (the replay's forward broadcasts DDP's buffers: a rank
        that failed to load must not leave the others waiting in it)."""
        if self._rewrap_on_resume:
            self.ddp = self._wrap()
        if self.layout_input is not None and self.steps_since_build > 0:
            self._replay_bucket_layout(torch.as_tensor(self.layout_input).to(self.device))

    def _replay_bucket_layout(self, x: torch.Tensor) -> None:
        """One forward and backward without communication, leaving parameters, buffers, gradients and random state
        as they were: DDP records the order its gradients become ready and rebuilds its buckets at the next
        forward, as after the uninterrupted run's first step."""
        buffers = {name: b.detach().clone() for name, b in self.model.named_buffers()}
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), without_cache(self.model):
            self.overlap.silent = True
            try:
                self.ddp(x).float().sum().backward()
            finally:
                self.overlap.silent = False
        with torch.no_grad():
            for name, b in self.model.named_buffers():
                b.copy_(buffers[name])
        self.model.zero_grad(set_to_none=True)

    def accumulating(self):
        return self.ddp.no_sync()  # DDP's own accumulation: its hooks skip this backward's all-reduces

    def after_backward(self, step):
        return []  # DDP reduced the gradients inside backward()

    def barrier_for_wait(self, step):
        return None  # no communication phase after backward to measure skew before

    def apply_update(self, step):
        set_lr(self.optimizer, self.cfg, step, self.cfg.steps)
        self.optimizer.step()
        self.steps_since_build += 1
        if self.freezer is not None:
            self._frozen_during = self.freezer.frozen
            if self.freezer.decide(step):  # DDP's gradients are averaged: the same decision on every rank
                self._rewrap()

    def _rewrap(self) -> None:
        """DDP's reducer waits for a gradient of every parameter it was built with, so a frozen layer needs a new
        wrapper over the active ones (its buckets built in parameter order, then from the ready order after its
        first step, as at the start of the run)."""
        self.ddp = None  # the old reducer, and its autograd hooks, go before the new one is built
        self.ddp = self._wrap()
        self.steps_since_build = 0

    def declare(self, rec) -> None:
        rec.add("timing/exposed", "s", (len(self.layers),))
        if self.freezer is not None:
            self.freezer.declare(rec, self.cfg.freeze_cache)

    def describe(self):
        return super().describe() | {"backend": self.backend, "bucket_mb": self.bucket_mb}


def pick_backend(comm, device: torch.device) -> str:
    """NCCL for CUDA where torch has it and no two ranks of a node share a GPU (a collective: every rank agrees);
    gloo otherwise."""
    if device.type != "cuda":
        return "gloo"
    import torch.distributed as dist

    own_gpu = node_local(comm)[1] <= torch.cuda.device_count()
    return "nccl" if all(comm.allgather(own_gpu and dist.is_nccl_available())) else "gloo"

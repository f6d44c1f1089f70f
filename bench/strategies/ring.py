"""``ring``: synchronous data-parallel SGD, gradients averaged per layer (or bucket) by ring all-reduce.

All replicas start from the same seed and apply the same averaged gradient, so they stay identical; with
equal per-rank batches this equals one process stepping on the concatenation of all ranks' batches.
"""

from __future__ import annotations

import torch

from bench.strategies.base import Exchange, HostStaging, Strategy, bucket_groups
from kernels.reference import ring_elements_sent
from kernels.ring_allreduce import RingAllreduce
from kernels.topology import Topology


class RingStrategy(Strategy):
    name = "ring"

    def __init__(self, cfg, comm, model, layers, device):
        super().__init__(cfg, comm, model, layers, device)
        self.allreduce = RingAllreduce(self.comm, self.topology)
        self.staging = HostStaging(layers, device, bucket_groups(layers, cfg.bucket_mb))
        self.optimizer = torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        self._exchanges = [Exchange(group, self._reducer(g)) for g, group in enumerate(self.staging.groups)]

    def make_topology(self, rank, size):
        return Topology.ring(rank, size)

    def _reducer(self, g: int):
        topo = self.topology
        p = topo.ring_size
        buf = self.staging.numpy[g]
        sent = ring_elements_sent(buf.size, p, topo.ring_index) * buf.itemsize

        def run() -> int:
            self.allreduce(self.staging.pack(g), key=g)
            self.staging.unpack(g, scale=1.0 / p)
            return sent

        return run

    def after_backward(self, step):
        return self._exchanges

    def apply_update(self, step):
        self.optimizer.step()

    def describe(self):
        return super().describe() | {"buckets": [list(g) for g in self.staging.groups]}

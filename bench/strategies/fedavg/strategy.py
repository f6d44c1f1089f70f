"""``fedavg``'s place in the strategy registry: its rank layout and partitioning for set-up. The round loop itself
is not a driver step (a round trains many clients for whole epochs): see :mod:`bench.run.rounds`."""

from __future__ import annotations

from bench.strategies.base import Strategy
from kernels.topology import Topology


class FedAvgStrategy(Strategy):
    name = "fedavg"
    needs_full_batches = False  # a client smaller than --batch-size trains on one batch of all its samples

    def make_topology(self, rank, size):
        return Topology.federated(rank, size, self.cfg.clients)

    @property
    def computes(self):
        return False  # set-up builds no loader; client hosts load their clients' data themselves

    @property
    def compute_ranks(self):
        return self.cfg.clients  # the data is partitioned over logical clients, not ranks

    @property
    def lockstep(self):
        return False

    def after_backward(self, step):
        raise NotImplementedError("fedavg runs its own round loop (bench.run.rounds)")

    def describe(self):
        cfg = self.cfg
        keys = ("clients", "fraction", "rounds", "local_epochs", "fedprox_mu", "server_opt", "dropout", "deadline")
        return super().describe() | {k: getattr(cfg, k) for k in keys}

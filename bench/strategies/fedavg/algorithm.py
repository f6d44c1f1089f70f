"""The federated algorithm as four hooks, in the shape of Flower's Strategy: configure the round (who takes part),
the client's local objective, how each update is folded into the aggregate, and the server's update of the global
model. FedAvg is the base; FedProx and FedOpt each override one hook; the next algorithms (SCAFFOLD, FedNova,
FedLAMA, robust aggregation) override the hooks they change in the same way.

- FedAvg (McMahan et al. 2017, Algorithm 1): sample m = max(1, round(C K)) clients; plain local loss; fold
  w_k with weight n_k into a streaming weighted sum; x <- sum_k n_k w_k / sum_k n_k.
- FedProx (Li et al. 2020, Eq. 2): local loss + mu/2 ||w - w_global||^2.
- FedOpt (Reddi et al. 2021, Algorithm 2): x <- server optimizer step on the pseudo-gradient avg - x
  (``aggregate.ServerOptimizer``: avgm, adam).
"""

from __future__ import annotations

import numpy as np

from bench.strategies.fedavg.aggregate import ServerOptimizer, StreamingMean
from bench.strategies.fedavg.sampling import sample_clients


class FedAvg:
    def __init__(self, cfg, size: int):
        self.cfg, self.size = cfg, size

    def configure_round(self, round_: int) -> np.ndarray:
        """Sorted ids of the clients sampled in ``round_`` (seeded: every rank computes the same)."""
        return sample_clients(self.cfg.seed, round_, self.cfg.clients, self.cfg.fraction)

    def begin_client(self, model):
        """Before a client's local training, from the global model: state its objective needs (none)."""
        return None

    def client_loss(self, loss, model, state):
        """The local objective of one mini-batch, given the plain loss."""
        return loss

    def new_aggregate(self) -> StreamingMean:
        return StreamingMean(self.size)

    def fold(self, aggregate: StreamingMean, update: np.ndarray, n_k: float) -> None:
        """Fold one client's model into the round's aggregate as it arrives (O(model) memory)."""
        aggregate.add(update, n_k)

    def server_update(self, x: np.ndarray, avg: np.ndarray) -> None:
        """The global model ``x`` (in place) from the round's weighted mean."""
        x[:] = avg


class FedProx(FedAvg):
    def begin_client(self, model):
        return [p.detach().clone() for p in model.parameters()]

    def client_loss(self, loss, model, anchor):
        prox = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor))
        return loss + 0.5 * self.cfg.fedprox_mu * prox


class FedOpt(FedAvg):
    def __init__(self, cfg, size: int):
        super().__init__(cfg, size)
        self.optimizer = ServerOptimizer(cfg.server_opt, size, cfg.server_lr, cfg.server_momentum)

    def server_update(self, x: np.ndarray, avg: np.ndarray) -> None:
        self.optimizer.step(x, avg)


def algorithm_for(cfg, size: int) -> FedAvg:
    """FedAvg, with FedProx's client objective (``--fedprox-mu`` > 0) and FedOpt's server update
    (``--server-opt`` avgm or adam) where asked for; the two compose (each overrides a different hook)."""
    chosen = [cls for cls, on in ((FedProx, cfg.fedprox_mu > 0), (FedOpt, cfg.server_opt != "avg")) if on]
    if not chosen:
        return FedAvg(cfg, size)
    cls = chosen[0] if len(chosen) == 1 else type("FedProxOpt", tuple(chosen), {})
    return cls(cfg, size)

"""FedDyn (Acar, Zhao, Matas, Mattina, Whatmough, Saligrama, ICLR 2021, "Federated learning based on dynamic
regularization", Algorithm 1) as overrides of FedAvg's hooks (:mod:`bench.strategies.fedavg.algorithm`).

Client k keeps the gradient state g_k (zero at first; the paper's grad L_k(theta_k^{t-1})) and, from the global
model theta^{t-1}, minimises its dynamically regularised objective

    L_k(theta) - <g_k, theta> + (alpha / 2) ||theta - theta^{t-1}||^2

by local SGD, then updates g_k <- g_k - alpha (theta_k^t - theta^{t-1}) (Algorithm 1, the first-order condition of
the objective). The server keeps h (zero at first) and, over the round's clients P_t out of m = ``--clients``:

    h^t = h^{t-1} - (alpha / m) sum_{k in P_t} (theta_k^t - theta^{t-1}),
    theta^t = (1 / |P_t|) sum_{k in P_t} theta_k^t - h^t / alpha.

So h = (1/m) sum_k g_k over all m clients after every round. The g_k live on the host that trains client k
(``--placement static``). As with SCAFFOLD's variates (:mod:`drift`), a late client's model stays out of the mean
but its host has already changed g_k, so its move still enters h: the invariant holds with deadlines too.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.runtime.client_state import ClientDict
from bench.strategies.fedavg.aggregate import StreamingMean
from bench.strategies.fedavg.algorithm import FedAvg


class MovedSum(StreamingMean):
    """FedDyn's round: the plain mean of the on-time models, and the sum and count of every model trained (late
    ones too), from which the server's h moves."""

    def __init__(self, size: int):
        super().__init__(size)
        self.trained = np.zeros(size)  # float64, as the model sums
        self.count = 0

    def reset(self) -> None:
        super().reset()
        self.trained[:] = 0.0
        self.count = 0

    def add_trained(self, y: np.ndarray) -> None:
        self.trained += y
        self.count += 1


def next_h(h: np.ndarray, moved: MovedSum, start: np.ndarray, alpha: float, clients: int) -> np.ndarray:
    """h^t = h^{t-1} - (alpha / m) sum_{k in P_t} (theta_k^t - theta^{t-1}) (float64)."""
    return h - (alpha / clients) * (moved.trained - moved.count * start.astype(np.float64))


class FedDyn(FedAvg):
    updates_client_state = True
    state_attributes = ("h", "client_grads")  # the server's h (rank 0), each host's g_k
    per_client = ("client_grads",)  # keyed by client id (bench.run.replacement)

    @classmethod
    def host_memory(cls, model_bytes: int, clients_per_host: int) -> dict:
        return {"gradient_state_bytes_per_host": clients_per_host * model_bytes}  # g_k of each client it trains

    def __init__(self, cfg, size: int, client_sizes=()):
        super().__init__(cfg, size, client_sizes)
        self.alpha = float(cfg.feddyn_alpha)
        self.h = np.zeros(size, dtype=np.float32)  # the server's state (rank 0)
        self.client_grads: dict[int, np.ndarray] = ClientDict()  # g_k of the clients this host trained (zero if absent)

    # ---- server side ----------------------------------------------------------------------------------
    def new_aggregate(self):
        return MovedSum(self.size)

    def fold(self, aggregate, update, head, extra=None) -> None:
        aggregate.add(update, 1.0)  # pragma: no mutate (a plain mean: any equal weight gives it)
        aggregate.add_trained(update)

    def fold_late(self, aggregate, update, head, extra=None) -> None:
        """The late model stays out of the mean; its move enters h (see the module docstring)."""
        aggregate.add_trained(update)

    def server_update(self, x: np.ndarray, aggregate, round_: int) -> None:
        h = next_h(self.h, aggregate, x, self.alpha, self.cfg.clients)  # x is still theta^{t-1} here
        x[:] = aggregate.mean() - h / self.alpha

    def end_round(self, aggregate, start: np.ndarray) -> None:
        """h^t, every round, also one whose models were all late (the server's update then keeps the model)."""
        self.h = next_h(self.h, aggregate, start, self.alpha, self.cfg.clients).astype(np.float32)

    # ---- client side ----------------------------------------------------------------------------------
    def begin_client(self, model, k: int = -1):
        """theta^{t-1} (the anchor of the proximal term) and g_k, one tensor per parameter."""
        g = self.client_grads.get(k)
        flat = torch.from_numpy(g) if g is not None else None
        anchor, grads, at = [], [], 0
        for p in model.parameters():
            anchor.append(p.detach().clone())
            part = flat[at : at + p.numel()].view(p.shape).to(p.device) if flat is not None else None
            grads.append(part)  # pragma: no mutate (a no-op on CPU; the CUDA tests run it on a device)
            at += p.numel()
        return anchor, grads

    def client_loss(self, loss, model, state):
        anchor, grads = state
        linear = sum((p * g).sum() for p, g in zip(model.parameters(), grads) if g is not None)
        prox = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor))
        return loss - linear + 0.5 * self.alpha * prox

    def end_client(self, k: int, state, x: np.ndarray, y: np.ndarray, steps: int) -> None:
        """g_k <- g_k - alpha (theta_k^t - theta^{t-1}); nothing travels beside the model."""
        old = self.client_grads.get(k, 0.0)
        self.client_grads[k] = (old - self.alpha * (y - x)).astype(np.float32)

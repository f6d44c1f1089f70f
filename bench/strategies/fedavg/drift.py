"""Algorithms against client drift and objective inconsistency, as overrides of FedAvg's hooks
(:mod:`bench.strategies.fedavg.algorithm`). Definitions from the papers, equations cited below.

**FedNova** (Wang, Liu, Liang, Joshi, Poor, NeurIPS 2020): client i reports its local step count tau_i and its
normaliser ||a_i||_1 (:func:`fednova_normaliser`) in its header; the server takes
    x <- x - tau_eff sum_i p_i (x - y_i) / ||a_i||_1,   tau_eff = sum_i p_i ||a_i||_1  (sum_i p_i tau_i if mu > 0),
p_i = n_i / sum_S n_j. Streamed in O(model) (:class:`NormalisedSum`): sum_i p_i (x - y_i) / a_i =
x sum_i p_i / a_i - sum_i p_i y_i / a_i. Equal tau_i and plain SGD give FedAvg.

**SCAFFOLD** (Karimireddy et al., ICML 2020, option II). The server sends x and its control variate c; client i
(variate c_i, zero at first) takes K steps of y <- y - eta_l (g(y) - c_i + c) (the correction is added to the
gradient, so momentum and weight decay act on the corrected gradient, as in the authors' SGD), then
c_i+ = c_i - c + (x - y) / (K eta_l); it uploads y and dc_i = c_i+ - c_i and keeps c_i+. Server:
x <- x + eta_g mean_S (y_i - x), c <- c + (1/N) sum_S dc_i (eta_g = ``--server-lr``, N = ``--clients``).
Client variates live on the host that trains the client (``--placement static``): N_host x model bytes per host.
A late client's model is left out of the round, but its host has already kept c_i+: its dc_i still goes into c
(:meth:`Scaffold.fold_late`), so that c = (1/N) sum_i c_i holds over all N clients, the invariant the server's
update keeps in the paper (where no client is late). Counting neither would need the host to undo c_i+, and it
cannot know that its upload will be late.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.runtime.client_state import ClientDict
from bench.strategies.fedavg.aggregate import StreamingMean
from bench.strategies.fedavg.algorithm import FedAvg
from bench.strategies.fedavg.protocol import Head


def fednova_normaliser(steps: int, momentum: float, eta_mu: float) -> float:
    """||a_i||_1 after ``steps`` local steps (FedNova's code, JYWa/FedNova: per step, with momentum rho a counter
    c <- rho c + 1 is added; with a proximal term the sum is first scaled by 1 - eta mu, then 1 is added; plain SGD
    adds 1)."""
    total, counter = 0.0, 0.0
    for _ in range(steps):
        if momentum != 0:
            counter = counter * momentum + 1.0
            total += counter
        if eta_mu != 0:
            total = total * (1.0 - eta_mu) + 1.0
        if momentum == 0 and eta_mu == 0:
            total += 1.0
    return total


class NormalisedSum(StreamingMean):
    """FedNova's round: sum_i n_i y_i / a_i (float64), with sum_i n_i / a_i, sum_i n_i a_i (or n_i tau_i) and
    sum_i n_i as scalars."""

    def __init__(self, size: int):
        super().__init__(size)
        self.inverse = self.effective = 0.0

    def reset(self) -> None:
        super().reset()
        self.inverse = self.effective = 0.0

    def add_client(self, y: np.ndarray, n: float, normaliser: float, tau: float) -> None:
        np.multiply(y, n / normaliser, out=self._product, dtype=np.float64)  # pragma: no mutate (out is float64)
        self.total += self._product
        self.weight += n
        self.inverse += n / normaliser
        self.effective += n * tau

    def step(self, x: np.ndarray) -> np.ndarray:
        """The new global model from ``x``."""
        tau_eff = self.effective / self.weight
        x64 = x.astype(np.float64)  # pragma: no mutate (astype(None) is float64 too)
        correction = (self.inverse / self.weight) * x64 - self.total / self.weight
        return (x - tau_eff * correction).astype(np.float32)


class FedNova(FedAvg):
    def new_aggregate(self):
        return NormalisedSum(self.size)

    def fold(self, aggregate, update, head, extra=None) -> None:
        tau = head[Head.STEPS] if self.cfg.fedprox_mu > 0 else head[Head.NORMALISER]
        aggregate.add_client(update, self.weight(head), float(head[Head.NORMALISER]), float(tau))

    def server_update(self, x: np.ndarray, aggregate, round_: int) -> None:
        x[:] = aggregate.step(x)


class VariateSum(StreamingMean):
    """SCAFFOLD's round: the plain mean of the clients' models and the sum of their variate changes."""

    def __init__(self, size: int):
        super().__init__(size)
        self.variates = np.zeros(size)  # float64 (numpy's default), as the model sums

    def reset(self) -> None:
        super().reset()
        self.variates[:] = 0.0


class Scaffold(FedAvg):
    extra_download = extra_upload = True
    state_attributes = ("c", "client_variates")  # the server's c (rank 0), each host's c_i
    per_client = ("client_variates",)  # keyed by client id (bench.run.replacement)

    @classmethod
    def host_memory(cls, model_bytes: int, clients_per_host: int) -> dict:
        return {"control_variate_bytes_per_host": clients_per_host * model_bytes}  # c_i of each client it trains

    def __init__(self, cfg, size: int, client_sizes=()):
        super().__init__(cfg, size, client_sizes)
        self.c = np.zeros(size, dtype=np.float32)  # the server's variate (rank 0), or the host's copy of it
        self.client_variates: dict[int, np.ndarray] = (
            ClientDict()
        )  # c_i of the clients this host trained (zero if absent)

    def new_aggregate(self):
        return VariateSum(self.size)

    def fold(self, aggregate, update, head, extra=None) -> None:
        aggregate.add(update, 1.0)  # pragma: no mutate (a plain mean: any equal weight gives it)
        aggregate.variates += extra

    def fold_late(self, aggregate, update, head, extra=None) -> None:
        """The late client's model stays out; its variate change counts (see the module docstring)."""
        aggregate.variates += extra

    def server_update(self, x: np.ndarray, aggregate, round_: int) -> None:
        mean = aggregate.mean()
        x += np.float32(self.cfg.server_lr) * (mean - x)

    def end_round(self, aggregate, start: np.ndarray) -> None:
        """c <- c + (1/N) sum dc_i, also in a round whose models were all late (their variates changed)."""
        self.c += aggregate.variates / self.cfg.clients  # float64 sums added into the float32 variate

    def download_extra(self) -> np.ndarray:
        return self.c

    def begin_client(self, model, k: int = -1):
        """The correction c - c_i, as one view per parameter (added to its gradient every step)."""
        correction = self.c - self.client_variates.get(k, 0.0)
        correction = np.ascontiguousarray(correction, dtype=np.float32)  # pragma: no mutate (c, c_i are float32)
        flat, views, off = torch.from_numpy(correction), [], 0
        for p in model.parameters():
            view = flat[off : off + p.numel()].view(p.shape)
            views.append(view.to(p.device))  # pragma: no mutate (a no-op on CPU; the CUDA tests run it on a device)
            off += p.numel()
        return views

    def correct_gradients(self, model, views) -> None:
        with torch.no_grad():
            for p, v in zip(model.parameters(), views):
                if p.grad is not None:
                    p.grad.add_(v)

    def end_client(self, k: int, state, x: np.ndarray, y: np.ndarray, steps: int) -> np.ndarray:
        old = self.client_variates.get(k, np.zeros(self.size, dtype=np.float32))  # pragma: no mutate (float64: finer)
        new = old - self.c + (x - y) / np.float32(steps * self.cfg.lr)
        self.client_variates[k] = new.astype(np.float32)
        return (new - old).astype(np.float32)

"""Aggregation on rank 0, pure numpy.

FedAvg (McMahan et al. 2017, Algorithm 1): w <- sum_k (n_k / n) w_k over the clients k that reported, n = sum n_k.
:class:`StreamingMean` folds each update into a running weighted sum as it arrives, so the aggregator holds
O(model) memory whatever the number of clients.

FedOpt (Reddi et al. 2021, "Adaptive federated optimization", Algorithm 2), with the pseudo-gradient
Delta = avg - x (the averaged model minus the current global model):
  avg:  x <- avg                       (plain FedAvg)
  avgm: m <- beta m + Delta;  x <- x + eta m
  adam: m <- b1 m + (1 - b1) Delta;  v <- b2 v + (1 - b2) Delta^2;  x <- x + eta m / (sqrt(v) + tau)
"""

from __future__ import annotations

import numpy as np

from bench.runtime.state import Stateful


class StreamingMean:
    def __init__(self, size: int):
        self.total = np.zeros(size)  # float64 (numpy's default): sums of many float32 models
        self.weight = 0.0
        self._product = np.empty(size)  # n_k w_k in float64, computed without a new array

    def reset(self) -> None:
        self.total[:] = 0.0
        self.weight = 0.0

    def add(self, values: np.ndarray, weight: float) -> None:
        np.multiply(values, weight, out=self._product, dtype=np.float64)  # pragma: no mutate (out is float64); as
        self.total += self._product  # weight * values.astype(float64), without allocating two temporaries
        self.weight += weight

    def merge(self, total: np.ndarray, weight: float) -> None:
        """Add another partial sum (a host's, or a subtree's) with its total weight."""
        self.total += total
        self.weight += weight

    def mean(self) -> np.ndarray:
        if self.weight <= 0:
            raise ValueError("no update to average")
        return (self.total / self.weight).astype(np.float32)


class ServerOptimizer(Stateful):
    state_attributes = ("m", "v")  # what a checkpoint keeps (bench.runtime.state)

    def __init__(self, kind: str, size: int, lr: float = 1.0, beta1: float = 0.9, beta2: float = 0.99, tau=1e-3):
        self.kind, self.lr, self.beta1, self.beta2, self.tau = kind, lr, beta1, beta2, tau
        self.m = np.zeros(size, dtype=np.float32) if kind != "avg" else None
        self.v = np.zeros(size, dtype=np.float32) if kind == "adam" else None

    def step(self, x: np.ndarray, avg: np.ndarray) -> None:
        """Update the global model ``x`` in place from the average of the clients' models."""
        if self.kind == "avg":
            x[:] = avg
            return
        delta = avg - x
        if self.kind == "avgm":
            self.m *= self.beta1
            self.m += delta
            x += self.lr * self.m
            return
        self.m *= self.beta1
        self.m += (1 - self.beta1) * delta
        self.v *= self.beta2
        self.v += (1 - self.beta2) * delta * delta
        x += self.lr * self.m / (np.sqrt(self.v) + self.tau)

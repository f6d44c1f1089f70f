"""Layer-wise partial training at weak clients (``--fl-algorithm partial``; InclusiveFL: Liu et al., KDD 2022,
"No one left behind: inclusive federated learning over heterogeneous devices", Sec. 4.1).

A client of a weaker tier (:mod:`tiers`) trains only the output-side layers: its leading ``--tier-frozen`` layers
run forward without a graph (their parameters do not require gradients, so autograd records nothing for them),
take no optimizer step, and are not uploaded. The server averages each layer over the clients that trained it,
weighted by n_k, and keeps the global layer where none did:

  y_{t+1} = sum_{k in S_y} n_k y_k / sum_{k in S_y} n_k   (the input-side part y: the clients that trained it)
  z_{t+1} = sum_{k in S}   n_k z_k / sum_{k in S}   n_k   (the output-side part z: every reporting client)

which with equal n_k is the talk's y_{t+1} = y_t - (eta / s) sum_strong Delta y_k, z_{t+1} = z_t - (eta / m)
sum_all Delta z_k. With every client strong it is FedAvg, bit for bit (the same sums in the same order).
"""

from __future__ import annotations

import numpy as np

from bench.runtime.errors import UsageError
from bench.strategies.fedavg.algorithm import FedAvg
from bench.strategies.fedavg.protocol import Head
from bench.strategies.fedavg.tiers import TIER_NAMES, too_many_frozen


class LayerwiseMean:
    """Each layer's weighted sum over the clients that trained it: O(model) memory, as :class:`StreamingMean`."""

    def __init__(self, offsets: np.ndarray):
        self.offsets = offsets
        self.total = np.zeros(int(offsets[-1]))  # float64
        self.layer_weight = np.zeros(len(offsets) - 1)
        self.weight = 0.0  # every folded client's: the aggregator's "did anyone report" test reads it

    def reset(self) -> None:
        self.total[:] = 0.0
        self.layer_weight[:] = 0.0
        self.weight = 0.0

    def add(self, values: np.ndarray, weight: float, trained: np.ndarray) -> None:
        """Fold a client's model: only the layers in ``trained`` (bool mask) are read."""
        for i in np.flatnonzero(trained):
            lo, hi = self.offsets[i], self.offsets[i + 1]
            self.total[lo:hi] += np.multiply(values[lo:hi], weight, dtype=np.float64)
            self.layer_weight[i] += weight
        self.weight += weight

    def update(self, x: np.ndarray) -> None:
        """The global model ``x`` (float32, in place): each layer some client trained becomes its mean."""
        for i in np.flatnonzero(self.layer_weight > 0):
            lo, hi = self.offsets[i], self.offsets[i + 1]
            x[lo:hi] = (self.total[lo:hi] / self.layer_weight[i]).astype(np.float32)


class PartialTraining(FedAvg):
    def set_model(self, offsets: np.ndarray) -> None:
        super().set_model(offsets)
        tiers, layers = self.cfg.federated.tiers, len(offsets) - 1
        if tiers is None:
            return
        if too_many_frozen(tiers, layers, self.cfg.model):
            raise UsageError(too_many_frozen(tiers, layers, self.cfg.model))
        self._masks = [tiers.trained(t, layers) for t in range(len(TIER_NAMES))]

    def trained(self, k: int) -> np.ndarray | None:
        """The layers client k trains and uploads: all but its tier's leading frozen ones."""
        return self._masks[self.tier_of[k]] if self.tier_of is not None else None

    def new_aggregate(self):
        return LayerwiseMean(self.offsets)

    def fold(self, aggregate, update: np.ndarray, head: np.ndarray, extra: np.ndarray | None = None) -> None:
        trained = self.trained(int(head[Head.CLIENT]))
        aggregate.add(update, self.weight(head), np.ones(len(self.offsets) - 1, bool) if trained is None else trained)

    def server_update(self, x: np.ndarray, aggregate, round_: int) -> None:
        aggregate.update(x)

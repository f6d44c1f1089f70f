"""FedLAMA (Lee, Zhang, Avestimehr, "Layer-wise Adaptive Model Aggregation for Scalable Federated Learning", arXiv
2110.10302, AAAI 2023), as overrides of FedAvg's hooks: the paper's Algorithm 1 (layer-wise discrepancy and
interval adjustment).

Rounds are ``--local-steps`` tau' steps. Every layer l has an aggregation interval I_l in {1, PHI} rounds; layer l
is averaged over the cohort at the end of round r when (r + 1) mod I_l == 0, and otherwise stays local on each
client. The cohort is sampled at rounds r with r mod PHI == 0 and kept until the next; since every interval
divides PHI, every layer is averaged at the end of each such block of PHI rounds. At that point the intervals are
re-chosen (:func:`choose_intervals`) from the block's last discrepancies d_l = dist_l / (I_l tau' dim_l),
dist_l = mean over the cohort of ||u_l - x_l^i||^2 (u_l the new average, x_l^i client i's layer).

Choices where the paper and its code leave room (said here, tested in tests/unit/test_fedlama.py):
- The unit is our layer (a module's parameters together, as timed and sent): a layer whose parameters are all
  vectors (biases, normalisation) keeps I_l = 1, as the authors' code keeps biases and norms at 1.
- Intervals are re-chosen at every block boundary from the first block on (the authors' code waits 5 rounds).
- dist_l is the plain mean over the clients that reported; u_l is the same n_k-weighted mean FedAvg takes.

The aggregator tells the hosts each round which layers it sends (``fresh``: averaged at the end of the previous
round) and which they must return (``averaged`` at the end of this one), in a plan message before the model
(:func:`bench.strategies.fedavg.protocol.plan_tag`). A host keeps each cohort client's model between rounds of a
block (``kept``: one model per client it trains, freed at the block's end) and loads the un-averaged layers from
it. PHI = 1 is FedAvg with local steps, bit for bit.
"""

from __future__ import annotations

import numpy as np

from bench.strategies.fedavg.aggregate import StreamingMean
from bench.strategies.fedavg.algorithm import FedAvg
from bench.strategies.fedavg.sampling import sample_clients


def choose_intervals(d: np.ndarray, dims: np.ndarray, eligible: np.ndarray, phi: int) -> np.ndarray:
    """FedLAMA's interval rule: all intervals 1; walk the eligible layers by d_l ascending, accumulating the
    discrepancy share delta = sum(d_l dim_l) / sum_all(d dim) and the size share lambda = sum(dim_l) / sum_all(dim);
    every layer walked gets PHI, and the walk stops after the first layer where (1 - lambda) < delta."""
    intervals = np.ones(len(d), dtype=np.int64)
    weighted = d * dims
    total_d, total_dim = float(weighted.sum()), float(dims.sum())
    if total_d <= 0 or phi == 1:
        return intervals
    delta = lam = 0.0
    for layer in sorted(np.flatnonzero(eligible), key=lambda i: (d[i], i)):
        delta += weighted[layer] / total_d
        lam += dims[layer] / total_dim
        intervals[layer] = phi
        if 1.0 - lam < delta:
            break
    return intervals


class DiscrepancySum(StreamingMean):
    """FedAvg's weighted sum, plus what dist_l needs in O(model): the plain sum of the clients' models and each
    layer's sum of squared norms, so that sum_i ||u - x_i||^2 = sum_i ||x_i||^2 - 2 u . sum_i x_i + m ||u||^2."""

    def __init__(self, size: int, offsets: np.ndarray):
        super().__init__(size)
        self.offsets = offsets
        self.plain = np.zeros(size)  # float64 (numpy's default), as StreamingMean's sums
        self.squares = np.zeros(len(offsets) - 1)
        self.count = 0

    def reset(self) -> None:
        super().reset()
        self.plain[:] = 0.0
        self.squares[:] = 0.0
        self.count = 0

    def add(self, values: np.ndarray, weight: float) -> None:
        super().add(values, weight)
        x = values.astype(np.float64)  # pragma: no mutate (astype(None) is float64 too)
        self.plain += x
        self.squares += np.add.reduceat(x * x, self.offsets[:-1])
        self.count += 1

    def distances(self, u: np.ndarray) -> np.ndarray:
        """dist_l = mean_i ||u_l - x_l^i||^2 for every layer (u: the new average, float64)."""
        starts = self.offsets[:-1]
        cross = np.add.reduceat(u * self.plain, starts)
        norms = np.add.reduceat(u * u, starts)
        clients = max(self.count, 1)  # pragma: no mutate (guards an empty round; one client: the numerator is 0)
        return np.maximum(self.squares - 2.0 * cross + self.count * norms, 0.0) / clients


class FedLama(FedAvg):
    plans_layers = True
    state_attributes = ("intervals",)  # chosen at each block's end; the cohort's kept models are the hosts'

    @classmethod
    def declare_series(cls, rec, layers: tuple[int]) -> None:
        """Rank 0's rows, per layer per round: averaged or kept local, the discrepancy, the interval."""
        rec.add("fedlama/averaged", "1", layers, dtype=np.int8)
        rec.add("fedlama/discrepancy", "1", layers)
        rec.add("fedlama/interval", "rounds", layers, dtype=np.int64)

    @classmethod
    def host_memory(cls, model_bytes: int, clients_per_host: int) -> dict:
        return {"kept_model_bytes_per_cohort_client": model_bytes}  # kept on its host between rounds of a block

    def __init__(self, cfg, size: int, client_sizes=()):
        super().__init__(cfg, size, client_sizes)
        self.phi = cfg.fedlama_phi
        self.offsets = np.array([0, size])
        self.eligible = np.ones(1, dtype=bool)  # pragma: no mutate (only its non-zeros are read)
        self.intervals = np.ones(1, dtype=np.int64)
        self.last: dict[str, np.ndarray] = {}  # the round's record: averaged, discrepancy, interval

    def set_layers(self, offsets, eligible) -> None:
        """The layers' flat offsets and which may get an interval of PHI (not all-vector layers)."""
        self.offsets = np.asarray(offsets).astype(np.int64)
        self.eligible = np.asarray(eligible).astype(bool)  # pragma: no mutate (only its non-zeros are read)
        self.intervals = np.ones(len(self.eligible), dtype=np.int64)

    def configure_round(self, round_: int) -> np.ndarray:
        """The cohort of the block of PHI rounds ``round_`` belongs to."""
        block_start = round_ - round_ % self.phi
        return sample_clients(self.cfg.seed, block_start, self.cfg.clients, self.cfg.fraction)

    def round_plan(self, round_: int) -> tuple[np.ndarray, np.ndarray]:
        """(fresh, averaged) per layer: sent by the server this round, and averaged at its end."""
        fresh = np.ones(len(self.intervals), dtype=bool) if round_ % self.phi == 0 else self.intervals == 1
        averaged = (round_ + 1) % self.intervals == 0
        return fresh, averaged

    def new_aggregate(self):
        return DiscrepancySum(self.size, self.offsets)

    def server_update(self, x: np.ndarray, aggregate, round_: int) -> None:
        """Average the layers due this round; at a block's end re-choose the intervals."""
        _, averaged = self.round_plan(round_)
        u = aggregate.total / aggregate.weight
        dims = np.diff(self.offsets)
        discrepancy = aggregate.distances(u) / (self.intervals * self.cfg.local_steps * dims)
        discrepancy[~averaged] = np.nan  # pragma: no mutate (None also stores NaN in a float array)
        for layer in np.flatnonzero(averaged):
            lo, hi = self.offsets[layer], self.offsets[layer + 1]
            x[lo:hi] = u[lo:hi]
        self.last = {"averaged": averaged.astype(np.int8), "discrepancy": discrepancy, "interval": self.intervals}
        if (round_ + 1) % self.phi == 0:
            self.intervals = choose_intervals(discrepancy, dims, self.eligible, self.phi)

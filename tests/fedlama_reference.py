"""FedLAMA's server written out from the paper in plain numpy, for the tests (never calls bench's FedLAMA code).

Lee, Zhang, Avestimehr, "Layer-wise Adaptive Model Aggregation for Scalable Federated Learning" (AAAI 2023),
Algorithm 1 and Section 4: layer l is averaged at the end of round r when (r + 1) mod I_l = 0; its discrepancy
d_l = mean_i ||u_l - x_l^i||^2 / (I_l tau' dim_l); every PHI rounds the layers are walked by d_l ascending, each
walked layer gets I_l = PHI, and the walk stops after the first layer where the size share lambda overtakes the
discrepancy share delta (1 - lambda < delta). Layers of vectors only keep I_l = 1; so does every layer when PHI = 1
or all discrepancies are 0.
"""

from __future__ import annotations

import numpy as np


class FedLamaReference:
    def __init__(self, offsets, eligible, phi: int, tau: int):
        self.offsets, self.eligible = list(offsets), list(eligible)
        self.phi, self.tau = phi, tau
        self.intervals = [1] * len(self.eligible)

    def layers(self):
        return list(zip(self.offsets[:-1], self.offsets[1:]))

    def plan(self, r: int) -> tuple[list[bool], list[bool]]:
        """(layers the server sends in round r, layers averaged at its end)."""
        fresh = [True] * len(self.intervals) if r % self.phi == 0 else [i == 1 for i in self.intervals]
        return fresh, [(r + 1) % i == 0 for i in self.intervals]

    def update(self, x: np.ndarray, clients: list[np.ndarray], weights: list[float], r: int) -> list[float]:
        """x (in place) after round r from the clients' models and weights n_k; returns each layer's d_l (nan where
        the layer was not averaged)."""
        _, averaged = self.plan(r)
        u = sum(w * c.astype(np.float64) for w, c in zip(weights, clients)) / sum(weights)
        d = []
        for l, (lo, hi) in enumerate(self.layers()):
            dist = np.mean([np.sum((u[lo:hi] - c[lo:hi].astype(np.float64)) ** 2) for c in clients])
            d.append(dist / (self.intervals[l] * self.tau * (hi - lo)) if averaged[l] else float("nan"))
            if averaged[l]:
                x[lo:hi] = u[lo:hi]
        if (r + 1) % self.phi == 0:
            self.intervals = self.rule(d)
        return d

    def rule(self, d: list[float]) -> list[int]:
        dims = [hi - lo for lo, hi in self.layers()]
        total_d = sum(dl * n for dl, n in zip(d, dims))
        intervals = [1] * len(d)
        if self.phi == 1 or not total_d > 0:
            return intervals
        delta = lam = 0.0
        walk = sorted((dl, l) for l, dl in enumerate(d) if self.eligible[l])
        for dl, l in walk:
            delta += dl * dims[l] / total_d
            lam += dims[l] / sum(dims)
            intervals[l] = self.phi
            if 1.0 - lam < delta:
                break
        return intervals

"""Who takes part in a round: pure functions of (seed, round, client), so every rank computes the same answer
without a message, and any round can be replayed from the results file's config.

- Sampling (McMahan et al. 2017, Algorithm 1): m = max(1, round(C K)) clients drawn without replacement, a fresh
  draw every round from the generator seeded with (seed, round).
- Dropout: a sampled client fails to report with probability P, drawn from (seed, round, client).
- Speed: client k is f_k = max(1, exp(sigma z_k)) times slower, z_k ~ N(0, 1) drawn once from (seed, k): a fixed
  device speed, as in heterogeneous-device FL simulations (e.g. FedProx's systems heterogeneity).
"""

from __future__ import annotations

import numpy as np

from bench.workload.stragglers import random_factor
from bench.workload.streams import Salt, stream


def sample_clients(seed: int, round_: int, clients: int, fraction: float) -> np.ndarray:
    """Sorted client ids sampled in ``round_``."""
    m = max(1, int(round(fraction * clients)))
    rng = stream(seed, round_, salt=Salt.SAMPLE)
    return np.sort(rng.choice(clients, size=m, replace=False))


def drops_out(seed: int, round_: int, client: int, probability: float) -> bool:
    if probability <= 0:
        return False
    return bool(stream(seed, round_, client, salt=Salt.DROP).random() < probability)


def speed_factor(seed: int, client: int, sigma: float) -> float:
    return random_factor(seed, client, -1 % 2**31, sigma)

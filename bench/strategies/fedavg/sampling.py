"""Who takes part in a round: pure functions of (seed, round, client), so every rank computes the same answer
without a message, and any round can be replayed from the results file's config.

- Sampling (McMahan et al. 2017, Algorithm 1): m = max(1, round(C K)) clients drawn without replacement, a fresh
  draw every round from the generator seeded with (seed, round).
- Size-proportional (Li et al., ICLR 2020, "On the convergence of FedAvg on non-IID data", scheme I): m draws
  with replacement with probability p_k = n_k / n; the round's clients are the distinct ids, each weighted by how
  often it was drawn (the plain mean over the m draws, which scheme I's unbiasedness needs: a client drawn twice
  would train twice from the same model on the same seeded batches, giving the same update).
- Power-of-choice (Cho, Wang, Joshi, AISTATS 2022): a candidate set of D clients drawn without replacement with
  probability p_k (:func:`sample_candidates`); the aggregator then keeps the m with the highest local loss on the
  current global model (:func:`highest_losses`), and averages their models with equal weights (the paper's
  aggregation, since the draw already follows p_k).
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
    return np.sort(rng.choice(clients, size=m, replace=False))  # pragma: no mutate (replace=None is False)


def sample_by_size(seed: int, round_: int, sizes, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct client ids, how many of the m draws picked each) for size-proportional selection."""
    sizes = np.asarray(sizes, dtype=np.float64)  # pragma: no mutate (p = sizes / sum is float either way)
    m = max(1, int(round(fraction * len(sizes))))
    rng = stream(seed, round_, salt=Salt.SAMPLE)
    draws = rng.choice(len(sizes), size=m, replace=True, p=sizes / sizes.sum())  # pragma: no mutate (True: default)
    ids, counts = np.unique(draws, return_counts=True)
    return ids, counts


def sample_candidates(seed: int, round_: int, sizes, count: int) -> np.ndarray:
    """Sorted ids of power-of-choice's D candidates in ``round_``."""
    sizes = np.asarray(sizes, dtype=np.float64)  # pragma: no mutate (p = sizes / sum is float either way)
    rng = stream(seed, round_, salt=Salt.SAMPLE)
    p = sizes / sizes.sum()
    return np.sort(rng.choice(len(sizes), size=count, replace=False, p=p))  # pragma: no mutate (replace=None: False)


def highest_losses(losses: dict[int, float], m: int) -> list[int]:
    """The m clients with the highest loss, sorted by id (ties: the lower id first; a NaN loss ranks last)."""
    ranked = sorted(losses, key=lambda k: (-losses[k] if np.isfinite(losses[k]) else np.inf, k))
    return sorted(ranked[:m])


def drops_out(seed: int, round_: int, client: int, probability: float) -> bool:
    if probability <= 0:  # pragma: no mutate (a fast path: random() < 0 is never true)
        return False
    draw = stream(seed, round_, client, salt=Salt.DROP).random()
    return bool(draw < probability)  # pragma: no mutate (draw == probability has probability 0)


def speed_factor(seed: int, client: int, sigma: float) -> float:
    return random_factor(seed, client, -1 % 2**31, sigma)

"""Robust aggregation (``--aggregator``), pure numpy: rules that need the whole cohort's updates at once.

- ``mean``: FedAvg's weighted mean, streamed (:class:`bench.strategies.fedavg.aggregate.StreamingMean`, O(model)).
- ``median``: coordinate-wise median (Yin et al., ICML 2018, "Byzantine-robust distributed learning").
- ``trimmed:BETA``: coordinate-wise trimmed mean: per coordinate drop the floor(BETA n) largest and as many
  smallest values, average the rest (Yin et al. 2018), BETA in [0, 0.5).
- ``krum:F``: the update with the lowest score, score(i) = sum of squared distances from update i to its
  n - F - 2 nearest other updates (Blanchard et al., NeurIPS 2017); needs n > 2F + 2.
- ``multikrum:F:M``: the plain mean of the M updates with the lowest scores (Blanchard et al. 2017, Section 4).

The robust rules are unweighted (the papers' definitions; a client's sample count is its own claim, which an
attacker controls). They hold the cohort's updates: O(cohort x model) memory on the aggregator, recorded as
``strategy_info.aggregator_memory_bytes``. Applied to the clients' models; since every client starts the round from
the same global model x, that is the same rule applied to the updates y_i - x, shifted by x.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FORMS = ("mean", "median", "trimmed:BETA", "krum:F", "multikrum:F:M")


@dataclass(frozen=True)
class Rule:
    name: str  # mean, median, trimmed, krum, multikrum
    beta: float = 0.0
    f: int = 0
    m: int = 1

    @property
    def streamed(self) -> bool:
        """The weighted mean, folded one update at a time in O(model); the robust rules keep the whole cohort."""
        return self.name == "mean"

    def tolerates(self, m: int) -> int:
        """Byzantine updates among ``m`` the rule is defined to withstand: none for the mean; fewer than half for
        the median ((m - 1) // 2, its breakdown point); floor(BETA m) for the trimmed mean (Yin et al. 2018,
        BETA >= the Byzantine share); F for Krum and Multi-Krum (Blanchard et al. 2017)."""
        if self.name == "median":
            return (m - 1) // 2
        if self.name == "trimmed":
            return int(np.floor(self.beta * m))
        return self.f  # krum, multikrum; 0 for the mean

    def least_cohort(self) -> int:
        """The fewest updates the rule is defined for."""
        if self.name in ("krum", "multikrum"):
            return max(2 * self.f + 3, self.m)  # n > 2F + 2 (Blanchard et al. 2017), and M of them to average
        return 1


def parse_aggregator(spec: str) -> Rule:
    """``--aggregator`` as a :class:`Rule`; ValueError naming the accepted forms otherwise."""
    name, *args = spec.split(":")
    try:
        if name in ("mean", "median") and not args:
            return Rule(name)
        if name == "trimmed" and len(args) == 1 and 0 <= float(args[0]) < 0.5:
            return Rule(name, beta=float(args[0]))
        if name == "krum" and len(args) == 1 and int(args[0]) >= 0:
            return Rule(name, f=int(args[0]))
        if name == "multikrum" and len(args) == 2 and int(args[0]) >= 0 and int(args[1]) >= 1:
            return Rule(name, f=int(args[0]), m=int(args[1]))
    except ValueError:
        pass
    raise ValueError(f"--aggregator {spec!r}: expected one of {', '.join(FORMS)} (BETA in [0, 0.5), F >= 0, M >= 1)")


def coordinate_median(updates: np.ndarray) -> np.ndarray:
    return np.median(updates, axis=0)


def trimmed_mean(updates: np.ndarray, beta: float) -> np.ndarray:
    n = updates.shape[0]
    cut = int(np.floor(beta * n))
    ordered = np.sort(updates, axis=0)
    return ordered[cut : n - cut].mean(axis=0)


def krum_scores(updates: np.ndarray, f: int) -> np.ndarray:
    """score(i) = sum of the n - f - 2 smallest squared distances from update i to the others."""
    n = updates.shape[0]
    sq = np.einsum("ij,ij->i", updates, updates)  # pragma: no mutate (einsum takes upper-case labels alike)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * updates @ updates.T, 0.0)
    # the diagonal (an update to itself) must sort last: inf, or NaN (sorted last too); n - f - 2 <= n - 2 others
    np.fill_diagonal(dist, np.inf)  # pragma: no mutate (NaN sorts last as well)
    nearest = n - f - 2
    ordered = np.sort(dist, axis=1)  # pragma: no mutate (axis 1 is the last axis, numpy's default)
    return ordered[:, :nearest].sum(axis=1)


def krum_select(updates: np.ndarray, f: int, m: int = 1) -> np.ndarray:
    """Indices of the m updates with the lowest Krum scores (ties: the lower index, as a stable sort gives)."""
    return np.argsort(krum_scores(updates, f), kind="stable")[:m]  # pragma: no mutate ("STABLE" is accepted too)


def aggregate(rule: Rule, updates: np.ndarray) -> np.ndarray:
    """The rule applied to a (n, d) array of updates (float64 in, float64 out)."""
    if updates.shape[0] < rule.least_cohort():
        raise ValueError(f"{rule.name} needs at least {rule.least_cohort()} updates, got {updates.shape[0]}")
    if rule.name == "median":
        return coordinate_median(updates)
    if rule.name == "trimmed":
        return trimmed_mean(updates, rule.beta)
    if rule.name in ("krum", "multikrum"):
        return updates[krum_select(updates, rule.f, rule.m)].mean(axis=0)
    return updates.mean(axis=0)


class CohortAggregate:
    """The round's updates kept whole (the aggregate interface of ``StreamingMean``: reset, add, weight, mean), for
    a robust rule. ``mean()`` applies the rule; a round with fewer updates than the rule needs (dropouts) raises
    ``ValueError``, and the aggregator then leaves the global model as it was."""

    def __init__(self, rule: Rule, size: int):
        self.rule, self.size = rule, size
        self.updates: list[np.ndarray] = []
        self.weight = 0.0

    @property
    def nbytes(self) -> int:
        return sum(u.nbytes for u in self.updates)

    def reset(self) -> None:
        self.updates, self.weight = [], 0.0

    def add(self, values: np.ndarray, weight: float) -> None:
        self.updates.append(np.asarray(values, dtype=np.float64).copy())
        self.weight += weight

    def mean(self) -> np.ndarray:
        return aggregate(self.rule, np.stack(self.updates)).astype(np.float32)

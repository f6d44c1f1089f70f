"""Repeated runs pooled into a mean with a 95 % confidence interval.

The interval is Student's t: mean +- t_{0.975, n-1} s / sqrt(n), with s the sample standard deviation (ddof 1),
the usual interval for a mean of a few independent repeats whose spread is unknown (e.g. Montgomery, Design and
Analysis of Experiments, ch. 2). With one run there is no interval (``half`` is NaN) and tables show the value
alone with n = 1. Horovod's synthetic benchmark prints img/s +- 1.96 sigma over its iterations; t is wider for
small n, which is the honest width for 3-5 repeats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A value pooled over ``n`` repeats: mean and the half-width of its 95 % t interval (NaN if n < 2)."""

    mean: float
    half: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half

    @property
    def high(self) -> float:
        return self.mean + self.half

    def __float__(self) -> float:
        return float(self.mean)


def estimate(values) -> Estimate:
    """Mean and t-interval half-width of the finite values given (NaN ones, e.g. "not reached", are left out
    and not counted in n)."""
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)  # pragma: no mutate (ints alike)
    arr = arr[np.isfinite(arr)]
    n = int(arr.size)
    if n == 0:
        return Estimate(math.nan, math.nan, 0)
    mean = float(arr.mean())
    if n < 2:
        return Estimate(mean, math.nan, 1)
    sem = float(arr.std(ddof=1)) / math.sqrt(n)
    return Estimate(mean, float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sem, n)

"""A latency-bandwidth (alpha-beta) cost model per algorithm: fitted from microbenchmarks on the sizes where each
algorithm runs, used to predict step time, communication share and speedup at rank counts that were not measured.

Point-to-point (Hockney 1994): t(n) = alpha + n beta for an n-byte message.
Our all-reduce kernel (``kernels/ring_allreduce.py``) runs two algorithms, switched by size
(``kernels.reference.allreduce_algorithm``, 128 KiB):
- ring (Patarasuk & Yuan 2009; Thakur, Rabenseifner & Gropp 2005): t(n, p) = 2 (p - 1) alpha + 2 ((p - 1)/p) n beta;
- recursive doubling (Thakur et al. 2005, Sec. 4.4): t(n, p) = k (alpha + n beta), k = log2 p' (+2 when p is not
  a power of two, p' the largest power of two <= p; ``kernels.reference.doubling_steps``).
Each is fitted on its own size range; predictions use, for each buffer, the algorithm the kernel would choose at
that p and size, with that algorithm's alpha and beta.
Parameter server: in a step each of S servers receives W gradient pieces of n_l / S bytes per layer and sends as
many back through its one link: t = 2 W sum_l (alpha + (n_l / S) beta).
FedAvg round (McMahan et al. 2017 protocol on one aggregator link): m sampled clients (the file's own median
count), t = 2 m sum_l (alpha + n_l beta).
Local SGD (tau local steps per average): the all-reduce cost once every tau steps.
Point-to-point messages take the doubling fit's alpha and beta below the switch size, the ring's above.

Predicted step = measured non-communication time per step (:func:`compute_per_step`) + modelled communication.
The model has no contention term: on an oversubscribed host (more busy threads than cores) the measured times
include waiting for a core, and predictions for such runs are marked, not silently wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kernels.reference import SMALL_BYTES, allreduce_algorithm, doubling_steps


@dataclass
class AlgorithmFit:
    alpha: float  # seconds
    beta: float  # seconds per byte
    alpha_se: float  # standard errors of the weighted least-squares estimates (NaN with < 3 points)
    beta_se: float
    lo_bytes: float  # the size range fitted
    hi_bytes: float
    points: int
    error: float  # median relative error of the fit over its points

    @property
    def bandwidth(self) -> float:
        return 1.0 / self.beta if self.beta > 0 else math.inf

    @property
    def physical(self) -> bool:
        """A latency and a per-byte time that can be real: both finite, alpha >= 0 and beta > 0. A fit on noisy
        or too few sizes can give a negative one (seen: "inf GB/s" from beta < 0 on an oversubscribed run)."""
        return math.isfinite(self.alpha) and math.isfinite(self.beta) and self.alpha >= 0 and self.beta > 0


@dataclass
class Fit:
    """alpha/beta per algorithm (``ring``, ``doubling``; a ping-pong fit or given values fill both)."""

    algorithms: dict[str, AlgorithmFit] = field(default_factory=dict)
    source: str = ""  # what it was fitted from
    oversubscribed: bool = False  # the microbenchmark ran on more busy threads than cores

    @classmethod
    def given(cls, alpha: float, beta: float) -> Fit:
        one = AlgorithmFit(alpha, beta, math.nan, math.nan, 0, math.inf, 0, 0.0)
        return cls({"ring": one, "doubling": one}, "given (--alpha, --beta)")

    def params(self, algorithm: str) -> AlgorithmFit:
        return self.algorithms.get(algorithm) or next(iter(self.algorithms.values()))

    def for_message(self, nbytes: float) -> AlgorithmFit:
        return self.params("doubling" if nbytes < SMALL_BYTES else "ring")

    def describe(self) -> list[str]:
        lines = [f"fitted from {self.source}"] if self.source else []
        if self.oversubscribed:
            lines.append(
                "‡ fitted on an oversubscribed microbenchmark (more busy threads than cores): its times include "
                "waiting for a core, so alpha and beta are the host's, not the network's"
            )
        for name, a in self.algorithms.items():
            rng = f"{_size(a.lo_bytes)}-{_size(a.hi_bytes)}, {a.points} sizes"
            bandwidth = f"{a.bandwidth / 1e9:.3f} GB/s" if a.physical else "no bandwidth: not physical"
            if not a.points:  # given with --alpha/--beta: no fit, so no standard error and no fit error
                lines.append(
                    f"{name}: alpha = {a.alpha * 1e6:.2f} us, beta = {a.beta * 1e9:.4f} ns/B ({bandwidth}), given"
                )
                continue
            lines.append(
                f"{name}: alpha = {a.alpha * 1e6:.2f} +- {a.alpha_se * 1e6:.2f} us, beta = {a.beta * 1e9:.4f} "
                f"+- {a.beta_se * 1e9:.4f} ns/B ({bandwidth}), range {rng}, median fit error {100 * a.error:.1f} %"
                + (
                    ""
                    if a.physical
                    else " † a negative or non-finite alpha or beta: not a latency and bandwidth "
                    "of any link (too few or too noisy sizes); predictions from it are not meaningful"
                )
            )
        return lines


def _size(n: float) -> str:
    if not math.isfinite(n):
        return "inf"
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n:g} B"


def coefficients(algorithm: str, p: int) -> tuple[float, float]:
    """(latency terms, bandwidth terms per byte) of one call: t = a alpha + b n beta."""
    if algorithm == "ring":
        return 2.0 * (p - 1), 2.0 * (p - 1) / p
    if algorithm == "doubling":
        k = float(doubling_steps(p))
        return k, k
    if algorithm == "p2p":
        return 1.0, 1.0
    return 0.0, 0.0


def fit_weighted(a: np.ndarray, b: np.ndarray, times: np.ndarray) -> tuple[float, float, float, float, float]:
    """Least squares t = a alpha + b beta weighted by 1/t (small messages count as much as large ones).
    Returns (alpha, beta, se alpha, se beta, median relative error); standard errors from the residual
    variance s^2 = sum (w r)^2 / (m - 2) and cov = s^2 (X_w^T X_w)^-1."""
    t = np.asarray(times, dtype=np.float64)  # pragma: no mutate (times are float already)
    w = 1.0 / t  # pragma: no mutate (any constant factor on the weights leaves the fit and its errors alike)
    design = np.stack([a, b], axis=1) * w[:, None]
    coef, *_ = np.linalg.lstsq(design, t * w, rcond=None)  # pragma: no mutate (rcond None is the default)
    resid = design @ coef - t * w
    m = len(t)
    se = (math.nan, math.nan)
    if m > 2:
        cov = float(resid @ resid) / (m - 2) * np.linalg.pinv(design.T @ design)
        se = tuple(float(math.sqrt(max(v, 0.0))) for v in np.diag(cov))
    err = float(np.median(np.abs(np.stack([a, b], axis=1) @ coef - t) / t))
    return float(coef[0]), float(coef[1]), se[0], se[1], err


def fit_allreduce(sizes, times, p: int, small_bytes: int = SMALL_BYTES) -> Fit:
    """Per-algorithm fit of our kernel's all-reduce times on p ranks: each size is assigned to the algorithm
    the kernel ran (below ``small_bytes``: doubling). An algorithm with fewer than 2 sizes gets no fit of its
    own; it then borrows the other's (:meth:`Fit.params`)."""
    if p < 2:
        raise ValueError("an all-reduce fit needs p >= 2")
    n = np.asarray(sizes, dtype=np.float64)  # pragma: no mutate (int sizes compute alike)
    t = np.asarray(times, dtype=np.float64)  # pragma: no mutate (times are float already)
    fits = {}
    for name in ("doubling", "ring"):
        mask = np.array([allreduce_algorithm(int(x), p, small_bytes) == name for x in n])
        if mask.sum() < 2:
            continue
        ca, cb = coefficients(name, p)
        alpha, beta, sa, sb, err = fit_weighted(np.full(mask.sum(), ca), cb * n[mask], t[mask])
        fits[name] = AlgorithmFit(alpha, beta, sa, sb, float(n[mask].min()), float(n[mask].max()), int(mask.sum()), err)
    if not fits:
        raise ValueError("an all-reduce fit needs at least two sizes on one algorithm")
    return Fit(fits, f"all-reduce on {p} ranks")


def fit_p2p(sizes, times) -> Fit:
    n = np.asarray(sizes, dtype=np.float64)  # pragma: no mutate (int sizes compute alike)
    times = np.asarray(times, dtype=np.float64)  # pragma: no mutate (times are float already)
    alpha, beta, sa, sb, err = fit_weighted(np.ones_like(n), n, times)
    one = AlgorithmFit(alpha, beta, sa, sb, float(n.min()), float(n.max()), len(n), err)
    return Fit({"ring": one, "doubling": one}, "ping-pong latency")


def allreduce_time(nbytes: float, p: int, fit: Fit) -> float:
    algorithm = allreduce_algorithm(int(nbytes), p)
    if algorithm == "none":  # pragma: no mutate (a fast path: "none" has no coefficients either)
        return 0.0
    a, b = coefficients(algorithm, p)
    f = fit.params(algorithm)
    return a * f.alpha + b * nbytes * f.beta


def p2p_time(nbytes: float, fit: Fit) -> float:
    f = fit.for_message(nbytes)
    return f.alpha + nbytes * f.beta

"""A latency-bandwidth (alpha-beta) cost model: fitted from microbenchmarks, used to predict step time,
communication ratio and speedup of each strategy at rank counts that were not measured.

Point-to-point (Hockney 1994): t(n) = alpha + n beta for an n-byte message.
Ring all-reduce (Patarasuk & Yuan 2009; Thakur, Rabenseifner & Gropp 2005, "Optimization of collective
communication operations in MPICH"): t(n, p) = 2 (p - 1) alpha + 2 ((p - 1) / p) n beta.
Parameter server, one server (incast): in a step the server receives W gradients and sends W parameter sets of
n bytes through its one link: t = 2 W (alpha + n beta); S servers each carry n / S: t = 2 W (alpha + (n / S) beta).
FedAvg round (McMahan et al. 2017 protocol on one aggregator link): m sampled clients, t = 2 m (alpha + n beta).
Local SGD (tau local steps per average): the ring cost once every tau steps.

Predicted step time = measured compute per step (forward + backward + optimizer, median over ranks and steps) +
modelled communication; communication ratio = communication / step; speedup (weak scaling) = p t(p0) / (p0 t(p)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.load import RunResults


@dataclass
class Fit:
    alpha: float  # seconds
    beta: float  # seconds per byte
    error: float  # median relative error of the fit over the points it was fitted to

    @property
    def bandwidth(self) -> float:
        return 1.0 / self.beta if self.beta > 0 else float("inf")


def fit_linear(sizes, times) -> tuple[float, float, float]:
    """Least squares t = a + b n weighted by 1/t (so small messages count as much as large ones); returns
    (a, b, median relative error)."""
    n = np.asarray(sizes, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    w = 1.0 / t
    design = np.stack([np.ones_like(n), n], axis=1) * w[:, None]
    (a, b), *_ = np.linalg.lstsq(design, t * w, rcond=None)
    err = float(np.median(np.abs(a + b * n - t) / t))
    return float(a), float(b), err


def fit_p2p(sizes, times) -> Fit:
    a, b, err = fit_linear(sizes, times)
    return Fit(a, b, err)


def fit_ring_allreduce(sizes, times, p: int) -> Fit:
    """alpha, beta from all-reduce times on p ranks via the ring model's two coefficients."""
    if p < 2:
        raise ValueError("an all-reduce fit needs p >= 2")
    a, b, err = fit_linear(sizes, times)
    return Fit(a / (2 * (p - 1)), b / (2 * (p - 1) / p), err)


def ring_allreduce_time(n: float, p: int, fit: Fit) -> float:
    return 0.0 if p < 2 else 2 * (p - 1) * fit.alpha + 2 * ((p - 1) / p) * n * fit.beta


def comm_per_step(strategy: str, layer_bytes: np.ndarray, p: int, fit: Fit, cfg: dict) -> float:
    """Modelled communication seconds per step (per round for fedavg) on p ranks (see the module docstring)."""
    total = float(np.sum(layer_bytes))
    if strategy == "ring":
        return sum(ring_allreduce_time(float(n), p, fit) for n in layer_bytes)
    if strategy == "localsgd":
        tau = max(1, int(cfg.get("local_steps", 1)))
        return sum(ring_allreduce_time(float(n), p, fit) for n in layer_bytes) / tau
    if strategy in ("ps", "ssp"):
        servers = max(1, int(cfg.get("servers", 1)))
        workers = max(1, p - servers)
        return 2 * workers * (len(layer_bytes) * fit.alpha + (total / servers) * fit.beta)
    if strategy == "fedavg":
        m = max(1, int(round(float(cfg.get("fraction", 0.1)) * int(cfg.get("clients", p - 1)))))
        return 2 * m * (len(layer_bytes) * fit.alpha + total * fit.beta)
    raise ValueError(f"no cost model for strategy {strategy}")


def compute_per_step(run: RunResults, warmup: int = 1) -> float:
    from analysis.metrics import compute_ranks

    ranks = compute_ranks(run)
    parts = [run.data[f"timing/{k}"][ranks] for k in ("forward", "backward")]
    per = sum(p.reshape(p.shape[0], p.shape[1], -1).sum(axis=2) for p in parts) + run.data["timing/optimizer"][ranks]
    lo = warmup if per.shape[1] > warmup else 0
    done = per[:, lo:]
    return float(np.median(done[done > 0])) if (done > 0).any() else 0.0


@dataclass
class Prediction:
    ranks: int
    step_s: float
    comm_s: float
    ratio: float
    speedup: float


def predict(run: RunResults, fit: Fit, ranks: list[int], warmup: int = 1) -> list[Prediction]:
    """Step time, communication ratio and weak-scaling speedup of ``run``'s strategy at each rank count, from its
    measured compute and the alpha-beta model; speedup is against the first rank count given."""
    compute = compute_per_step(run, warmup)
    layer_bytes = run.data["layers/bytes"].astype(np.float64)
    out = []
    for p in ranks:
        comm = comm_per_step(run.strategy, layer_bytes, p, fit, run.config)
        out.append(Prediction(p, compute + comm, comm, comm / (compute + comm) if compute + comm else 0.0, 0.0))
    workers = [_computing(run.strategy, pr.ranks, run.config) for pr in out]
    base = workers[0] / out[0].step_s
    for pr, w in zip(out, workers):
        pr.speedup = (w / pr.step_s) / base
    return out


def _computing(strategy: str, p: int, cfg: dict) -> int:
    if strategy in ("ps", "ssp"):
        return max(1, p - int(cfg.get("servers", 1)))
    if strategy == "fedavg":
        return max(1, p - 1)
    return p

"""Federated rounds in one process, written out from the papers for the MPI tests (never calls bench's FedAvg,
FedNova, SCAFFOLD or FedProx code; the data, model, partition and each client's batch order are inputs).

- FedAvg (McMahan et al. 2017, Algorithm 1): x <- sum_k n_k y_k / sum_k n_k.
- FedProx (Li et al. 2020, Eq. 2): the local loss plus mu / 2 ||w - x||^2.
- FedNova (Wang et al. 2020, Eq. 6-7, plain SGD so ||a_i||_1 = tau_i): x <- x - tau_eff sum_i p_i (x - y_i) / tau_i,
  p_i = n_i / sum n_j, tau_eff = sum_i p_i tau_i.
- SCAFFOLD (Karimireddy et al. 2020, Algorithm 1, option II): client steps y <- y - eta (g(y) - c_i + c); after K
  steps c_i+ = c_i - c + (x - y) / (K eta); server x <- x + eta_g mean_S (y_i - x), c <- c + (1/N) sum_S (c_i+ - c_i).
- FedDyn (Acar et al. 2021, Algorithm 1): the client's gradient plus - g_k + alpha (w - x) (added to the gradient
  here, not differentiated as the suite's client loss is); g_k <- g_k - alpha (y_k - x); server
  h <- h - (alpha / N) sum_S (y_k - x), x <- mean_S y_k - h / alpha.

The cohort of each round is read from the run's results file (``cohorts_from_file``), so the sampling is not
re-derived here; clients train with torch's own SGD, as the suite's clients do.
"""

from __future__ import annotations

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from bench.strategies.fedavg.local import local_batches
from bench.workload import data, models, partition


def cohorts_from_file(path: str, rounds: int) -> list[list[int]]:
    """The clients that reported on time in each round (status 0), in round order, from ``fedavg/clients``."""
    with h5py.File(path) as f:
        r, k, status = (f[f"fedavg/clients/{n}"][()] for n in ("round_number", "client", "status"))  # from 1
    return [sorted(int(c) for c in k[(r == 1 + i) & (status == 0)]) for i in range(rounds)]


def flat(params) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in params]).numpy().astype(np.float64)


def load(params, values: np.ndarray) -> None:
    at = 0
    with torch.no_grad():
        for p in params:
            p.copy_(torch.from_numpy(values[at : at + p.numel()].reshape(p.shape).astype(np.float32)))
            at += p.numel()


def serial_rounds(cfg, cohorts: list[list[int]], algorithm: str = "fedavg") -> np.ndarray:
    """The global model after ``len(cohorts)`` rounds of ``algorithm`` (fedavg, fednova, scaffold or feddyn)."""
    ds = data.load(cfg)
    model = models.build(cfg.model, ds.shape, ds.classes, cfg.seed)
    parts = partition.make(cfg.partition, ds.y_train, cfg.clients, cfg.seed, alpha=cfg.alpha, groups=ds.groups)
    params = [p for layer in models.layers_of(model) for p in layer.params]  # the suite's flat layout
    x = flat(params)
    c, c_client = np.zeros_like(x), {}
    for r, cohort in enumerate(cohorts):
        ys, ns, taus = [], [], []
        for k in cohort:
            load(params, x)
            anchor = [p.detach().clone() for p in params]
            idx = parts[k]
            xs, y = torch.from_numpy(np.ascontiguousarray(ds.x_train[idx])), torch.from_numpy(ds.y_train[idx])
            opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
            correction = c - c_client.get(k, np.zeros_like(x))
            steps = 0
            for order in local_batches(cfg, k, r, len(y)):
                i = torch.from_numpy(order)
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(xs[i]), y[i])
                if cfg.fedprox_mu > 0:
                    loss = loss + 0.5 * cfg.fedprox_mu * sum(((p - a) ** 2).sum() for p, a in zip(params, anchor))
                loss.backward()
                if algorithm == "scaffold":
                    add_to_gradients(params, correction)
                if algorithm == "feddyn":
                    add_to_gradients(params, cfg.feddyn_alpha * (flat(params) - x) - c_client.get(k, np.zeros_like(x)))
                opt.step()
                steps += 1
            y_k = flat(params)
            if algorithm == "scaffold":
                new = c_client.get(k, np.zeros_like(x)) - c + (x - y_k) / (steps * cfg.lr)
                ys.append((y_k, new - c_client.get(k, np.zeros_like(x))))
                c_client[k] = new
            elif algorithm == "feddyn":
                c_client[k] = c_client.get(k, np.zeros_like(x)) - cfg.feddyn_alpha * (y_k - x)
                ys.append(y_k)
            else:
                ys.append(y_k)
            ns.append(float(len(y)))
            taus.append(float(steps))
        x, c = server_step(cfg, algorithm, x, c, ys, ns, taus)
    return x


def add_to_gradients(params, vector: np.ndarray) -> None:
    at = 0
    for p in params:
        p.grad += torch.from_numpy(vector[at : at + p.numel()].reshape(p.shape).astype(np.float32))
        at += p.numel()


def server_step(cfg, algorithm, x, c, ys, ns, taus):
    """The server's update of the papers above from the round's client results."""
    if not ys:
        return x, c
    p = np.array(ns) / sum(ns)
    if algorithm == "fednova":
        tau_eff = float(p @ np.array(taus))
        return x - tau_eff * sum(pi * (x - y) / t for pi, y, t in zip(p, ys, taus)), c
    if algorithm == "feddyn":
        h = c - cfg.feddyn_alpha / cfg.clients * sum(y - x for y in ys)
        return np.mean(ys, axis=0) - h / cfg.feddyn_alpha, h
    if algorithm == "scaffold":
        step = np.mean([y - x for y, _ in ys], axis=0)
        return x + cfg.server_lr * step, c + sum(dc for _, dc in ys) / cfg.clients
    return sum(pi * y for pi, y in zip(p, ys)), c


def train_client(cfg, model, ds, idx, k: int, r: int, after_step=None) -> int:
    """Client k's local work in round r with torch's SGD (its batches from ``local_batches``); ``after_step()``
    runs after every update. Returns n_k."""
    xs, y = torch.from_numpy(np.ascontiguousarray(ds.x_train[idx])), torch.from_numpy(ds.y_train[idx])
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    for order in local_batches(cfg, k, r, len(y)):
        i = torch.from_numpy(order)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xs[i]), y[i]).backward()
        opt.step()
        if after_step is not None:
            after_step()
    return len(y)


def serial_partial(cfg, cohorts: list[list[int]], frozen_of: dict[int, int]) -> np.ndarray:
    """InclusiveFL's layer-wise partial training (Liu et al., KDD 2022), plain SGD: client k trains from the global
    model with its first ``frozen_of[k]`` layers (the suite's layer list) held at the global values (here: put back
    after every step, not left out of autograd as the suite does), and the server sets each layer to the n_k-weighted
    mean over the clients that trained it, y_{t+1} = sum_{S_y} n_k y_k / sum_{S_y} n_k, keeping the global layer
    where no client did."""
    ds = data.load(cfg)
    model = models.build(cfg.model, ds.shape, ds.classes, cfg.seed)
    parts = partition.make(cfg.partition, ds.y_train, cfg.clients, cfg.seed, alpha=cfg.alpha, groups=ds.groups)
    layers = models.layers_of(model)
    params = [p for layer in layers for p in layer.params]
    bounds = np.cumsum([0] + [layer.numel for layer in layers])
    x = flat(params)
    for r, cohort in enumerate(cohorts):
        sums, weights = np.zeros_like(x), np.zeros(len(layers))
        for k in cohort:
            load(params, x)
            held = bounds[frozen_of[k]]  # the frozen prefix of the flat model, put back after every step

            def hold(prefix=x[:held], cut=held):
                load(params, np.concatenate([prefix, flat(params)[cut:]]))

            n = train_client(cfg, model, ds, parts[k], k, r, hold)
            y_k = flat(params)
            for j in range(frozen_of[k], len(layers)):
                sums[bounds[j] : bounds[j + 1]] += n * y_k[bounds[j] : bounds[j + 1]]
                weights[j] += n
        x = x.copy()
        for j in np.flatnonzero(weights):
            x[bounds[j] : bounds[j + 1]] = sums[bounds[j] : bounds[j + 1]] / weights[j]
    return x


def serial_width(cfg, cohorts: list[list[int]], width_of: dict[int, float]) -> np.ndarray:
    """Static HeteroFL (Diao et al. 2021), plain SGD: client k trains the model of width ratio ``width_of[k]``
    loaded with the leading slices of the global parameters (torch slicing here), and the server sets every entry
    to the n_k-weighted mean over the clients whose sub-model holds it, keeping the global entry where none does."""
    ds = data.load(cfg)
    full = models.build(cfg.model, ds.shape, ds.classes, cfg.seed)
    parts = partition.make(cfg.partition, ds.y_train, cfg.clients, cfg.seed, alpha=cfg.alpha, groups=ds.groups)
    x = [p.detach().double().clone() for layer in models.layers_of(full) for p in layer.params]
    for r, cohort in enumerate(cohorts):
        sums, weights = [torch.zeros_like(t) for t in x], [torch.zeros_like(t) for t in x]
        for k in cohort:
            width = width_of[k]
            model = models.build(cfg.model, ds.shape, ds.classes, cfg.seed, **({"width": width} if width < 1 else {}))
            params = [p for layer in models.layers_of(model) for p in layer.params]
            leading = [tuple(slice(0, n) for n in p.shape) for p in params]
            with torch.no_grad():
                for p, g, cut in zip(params, x, leading):
                    p.copy_(g[cut].float())
            n = train_client(cfg, model, ds, parts[k], k, r)
            for p, total, weight, cut in zip(params, sums, weights, leading):
                total[cut] += n * p.detach().double()
                weight[cut] += n
        for g, total, weight in zip(x, sums, weights):
            held = weight > 0
            g[held] = total[held] / weight[held]
    return torch.cat([g.reshape(-1) for g in x]).numpy()

"""The optimizer every local update uses (ring, localsgd and ddp ranks, parameter servers, FedAvg clients) and its
learning-rate schedule: one place, so a new optimizer or schedule is added once for every strategy.

Optimizers (``--optimizer``): sgd (PyTorch's SGD with ``--momentum`` and ``--weight-decay``), adam (PyTorch's
Adam, betas 0.9 / 0.999), lars and lamb (:mod:`bench.workload.layerwise`: a trust ratio per parameter tensor).

Schedule (``--lr-schedule``, ``--lr-warmup-steps W``), per step t of ``total`` (FedAvg: per round of ``--rounds``):
- linear warm-up (Goyal et al. 2017, "Accurate, large minibatch SGD", Section 2.2): lr (t + 1) / W for t < W, so
  the rate ramps from lr / W to lr;
- then constant lr; step: lr x 0.1 after half of ``total`` and again after three quarters (the shape of Goyal et
  al.'s ResNet schedule); cosine: lr (1 + cos(pi (t - W) / (total - W))) / 2 (Loshchilov & Hutter 2017, no restarts).
"""

from __future__ import annotations

import math

import torch

from bench.workload.layerwise import LAMB, LARS

OPTIMIZERS = ("sgd", "adam", "lars", "lamb")
SCHEDULES = ("constant", "step", "cosine")


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    """The run's optimizer with its learning rate, momentum and weight decay."""
    kind = cfg.optimizer
    if kind == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if kind == "lars":
        return LARS(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, trust=cfg.trust_coefficient
        )
    if kind == "lamb":
        return LAMB(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def scheduled_lr(cfg, step: int, total: int) -> float:
    """The learning rate at ``step`` (0-based) of ``total``."""
    lr, warm = cfg.lr, cfg.lr_warmup_steps
    if step < warm:
        return lr * (step + 1) / warm
    schedule = cfg.lr_schedule
    if schedule == "step":
        return lr * 0.1 ** sum(step >= milestone for milestone in (total // 2, (3 * total) // 4))
    if schedule == "cosine":
        span = max(1, total - warm)  # pragma: no mutate (guards 0 only: total - warm <= 1 gives step - warm = 0)
        return lr * 0.5 * (1.0 + math.cos(math.pi * (step - warm) / span))
    return lr


def set_lr(optimizer: torch.optim.Optimizer, cfg, step: int, total: int) -> None:
    """Before ``optimizer.step()``: the scheduled rate into every parameter group (constant: exactly ``--lr``)."""
    lr = scheduled_lr(cfg, step, total)
    for group in optimizer.param_groups:
        group["lr"] = lr

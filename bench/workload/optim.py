"""The optimizer every local update uses (ring and localsgd ranks, parameter servers, FedAvg clients): one place,
so a new optimizer or schedule is added once for every strategy."""

from __future__ import annotations

import torch


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    """SGD with the run's learning rate, momentum and weight decay (PyTorch's definition of each)."""
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

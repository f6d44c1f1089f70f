"""Optimizers and schedules written out from their papers for the training oracles (never calls bench's
optimizer code): a step is a function of the parameter, its gradient, its state and the rate.

- LARS (You, Gitman, Ginsburg 2017, Algorithm 1), with LARC's ratio 1 where ||w|| or ||g|| is 0:
  v <- m v + lr eta ||w|| / (||g|| + beta ||w||) (g + beta w); w <- w - v. Vectors: v <- m v + lr g.
- LAMB (You et al. 2020, Algorithm 2): Adam moments with bias correction, u = r + lambda w,
  w <- w - lr ||w|| / ||u|| u (ratio 1 where a norm is 0). Vectors: w <- w - lr r.
- Warm-up (Goyal et al. 2017, Sec. 2.2): lr (t + 1) / W for t < W; step: x 0.1 at floor(T / 2) and floor(3 T / 4);
  cosine (Loshchilov & Hutter 2017): lr (1 + cos(pi (t - W) / (T - W))) / 2.
"""

from __future__ import annotations

import math

import torch


def lr_at(cfg, t: int, total: int) -> float:
    if t < cfg.lr_warmup_steps:
        return cfg.lr * (t + 1) / cfg.lr_warmup_steps
    if cfg.lr_schedule == "step":
        return cfg.lr * (0.1 if t >= total // 2 else 1.0) * (0.1 if t >= 3 * total // 4 else 1.0)
    if cfg.lr_schedule == "cosine":
        return cfg.lr * (1 + math.cos(math.pi * (t - cfg.lr_warmup_steps) / (total - cfg.lr_warmup_steps))) / 2
    return cfg.lr


class ReferenceOptimizer:
    """SGD (torch's), LARS or LAMB as above, stepped at ``lr_at`` for each step."""

    def __init__(self, params, cfg, total: int):
        self.params, self.cfg, self.total = list(params), cfg, total
        self.state = [{} for _ in self.params]
        self.sgd = None
        if cfg.optimizer == "sgd":
            self.sgd = torch.optim.SGD(self.params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, t: int):
        lr = lr_at(self.cfg, t, self.total)
        if self.sgd is not None:
            for group in self.sgd.param_groups:
                group["lr"] = lr
            return self.sgd.step()
        for w, state in zip(self.params, self.state):
            (lars_step if self.cfg.optimizer == "lars" else lamb_step)(w, w.grad, state, lr, self.cfg)


def lars_step(w, g, state, lr, cfg):
    beta = cfg.weight_decay
    if w.dim() > 1:
        wn, gn = float(w.norm()), float(g.norm())
        ratio = cfg.trust_coefficient * wn / (gn + beta * wn) if wn > 0 and gn > 0 else 1.0
        update = lr * ratio * (g + beta * w)
    else:
        update = lr * g
    state["v"] = cfg.momentum * state.get("v", torch.zeros_like(w)) + update
    w -= state["v"]


def lamb_step(w, g, state, lr, cfg, b1=0.9, b2=0.999, eps=1e-6):
    t = state["t"] = state.get("t", 0) + 1
    state["m"] = b1 * state.get("m", torch.zeros_like(w)) + (1 - b1) * g
    state["v"] = b2 * state.get("v", torch.zeros_like(w)) + (1 - b2) * g * g
    r = (state["m"] / (1 - b1**t)) / ((state["v"] / (1 - b2**t)).sqrt() + eps)
    if w.dim() > 1:
        u = r + cfg.weight_decay * w
        wn, un = float(w.norm()), float(u.norm())
        w -= lr * (wn / un if wn > 0 and un > 0 else 1.0) * u
    else:
        w -= lr * r

"""Large-batch optimizers with a layer-wise trust ratio (LARS, LAMB; the papers below).

Each parameter tensor is a "layer" (as in the common implementations). Tensors of one dimension (biases,
normalisation scales and shifts) are excluded from the trust ratio and from weight decay, as the papers' and the
common implementations do: they take the plain update.

- LARS (You, Gitman, Ginsburg 2017, "Large batch training of convolutional networks", Algorithm 1):
  local_lr = eta ||w|| / (||g|| + beta ||w||), and 1 where ||w|| or ||g|| is 0 (NVIDIA's LARC and timm's
  ``Lars`` test both norms: with weight decay and a zero gradient the formula would give eta / beta instead);
  v <- m v + lr local_lr (g + beta w); w <- w - v. eta = ``--trust-coefficient``, beta = ``--weight-decay``,
  m = ``--momentum``.
- LAMB (You et al., ICLR 2020, "Large batch optimization for deep learning", Algorithm 2): Adam moments with bias
  correction, r = m_hat / (sqrt(v_hat) + eps), u = r + lambda w, w <- w - lr (||w|| / ||u||) u (phi the
  identity; ratio 1 where a norm is 0). lambda = ``--weight-decay``; beta1 0.9, beta2 0.999, eps 1e-6.
"""

from __future__ import annotations

import torch


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """scale x numerator / denominator, or 1 where either is 0 (a fresh zero tensor, or a zero gradient), as the
    common implementations do (e.g. NVIDIA's LARC)."""
    ok = (numerator > 0) & (denominator > 0)
    return torch.where(ok, scale * numerator / torch.where(ok, denominator, torch.ones_like(denominator)), 1.0)


class LARS(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0, trust: float = 1e-3):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust=trust))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for w in group["params"]:
                if w.grad is None:
                    continue
                g, decay = w.grad, group["weight_decay"]
                if w.dim() > 1:
                    w_norm, g_norm = w.norm(), g.norm()
                    ratio = _ratio(w_norm, g_norm + decay * w_norm, group["trust"])
                    local = torch.where(g_norm > 0, ratio, 1.0)  # no host sync on a device
                    update = group["lr"] * local * (g + decay * w)
                else:
                    update = group["lr"] * g
                state = self.state[w]
                v = state.setdefault("velocity", torch.zeros_like(w))
                v.mul_(group["momentum"]).add_(update)
                w.sub_(v)


class LAMB(torch.optim.Optimizer):
    def __init__(self, params, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.999), eps: float = 1e-6):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for w in group["params"]:
                if w.grad is None:
                    continue
                state = self.state[w]
                t = state["step"] = state.get("step", 0) + 1
                m = state.setdefault("m", torch.zeros_like(w))
                v = state.setdefault("v", torch.zeros_like(w))
                m.mul_(b1).add_(w.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(w.grad, w.grad, value=1 - b2)
                r = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + group["eps"])
                if w.dim() > 1:
                    u = r + group["weight_decay"] * w
                    w.sub_(group["lr"] * _ratio(w.norm(), u.norm()) * u)
                else:
                    w.sub_(group["lr"] * r)

"""``localsgd``: every rank takes ``--local-steps`` (tau) SGD steps on its own data, then parameters are averaged
around the ring, per layer and timed per layer.

- Warm-up (post-local SGD, Lin et al. 2020, "Don't use large mini-batches, use local SGD", Sec. 3): for the first
  ``--warmup-steps`` steps parameters are averaged after every step.
- The last step always averages, so the model evaluated and written at the end is the global average.
- SlowMo (Wang et al. 2020, "SlowMo: improving communication-efficient distributed SGD with slow momentum",
  Algorithm 1): with x0 the parameters at the previous average and x the new average,
  u <- beta u + (x0 - x) / lr;  x0 <- x0 - alpha lr u.  beta = 0, alpha = 1 is plain averaging (and skipped).
With tau = 1 and plain SGD this is the same update as ``ring``: mean(x - lr g_r) = x - lr mean(g_r).
"""

from __future__ import annotations

import numpy as np
import torch

from bench.strategies.averaging import average_exchanges
from bench.strategies.ring import RingStrategy


def is_sync_step(step: int, steps: int, tau: int, warmup: int) -> bool:
    """Does step ``step`` (0-based) end with an average? Every step during warm-up, then every tau-th step,
    and always the last step."""
    if step < warmup or step == steps - 1:
        return True
    return (step - warmup + 1) % tau == 0


class LocalSGDStrategy(RingStrategy):
    """Same ring, staging and local optimizer as ``ring``; averages parameters instead of gradients."""

    name = "localsgd"
    state_attributes = ("model", "optimizer", "compressed", "slow", "velocity", "frozen_prefix", "_freeze_pending")

    def __init__(self, cfg, comm, model, layers, device):
        super().__init__(cfg, comm, model, layers, device)
        self._synced = None
        self._freeze_pending = False  # a freeze point passed: decide after the next average

    def freeze_point(self, step: int) -> None:
        """Each rank's gradients are its own: a freeze point is only noted here; the decision waits for the next
        average of the parameters, so the frozen prefix is the same on every rank (``before_step``)."""
        self._freeze_pending |= self.freezer.due(step)

    def _freeze_after_average(self, step: int) -> None:
        """Before row ``step``, if the step before it averaged the parameters: the pending decision, on the
        layers' gradient norms averaged over the ranks (our ring, one small message), recorded in this row."""
        if not (self._freeze_pending and step >= 1 and self._sync(step - 1)):
            return
        self._freeze_pending = False
        size = self.comm.size

        def agree(norms):
            return self.allreduce(norms.astype(np.float64), key=len(self.layers) + 1) / size

        if self.freezer.choose(step, agree):
            self._rebuild_buckets()

    def make_exchanges(self) -> list:
        """Parameters, not gradients, averaged after the update; SlowMo's outer step on the averaged buffer."""
        cfg = self.cfg
        self.slowmo = not (cfg.outer_momentum == 0.0 and cfg.outer_lr == 1.0)
        after = None
        if self.slowmo:
            self.slow = [self.staging.pack(g, grads=False).copy() for g in range(len(self.staging.groups))]
            self.velocity = [torch.zeros_like(h) for h in self.staging.host]
            after = self._outer_update
        self.compressed = self.compressed_averaging(cfg, anchored=True, after=after)  # the change since x0
        if self.compressed is not None:
            return self.compressed.exchanges()
        return average_exchanges(self.staging, self.allreduce, False, self.pipeline(), after)

    def declare(self, rec):
        super().declare(rec)
        self._synced = rec.add("localsgd/synced", "1")

    def _outer_update(self, g: int) -> None:
        cfg = self.cfg
        avg = self.staging.host[g]
        slow = torch.from_numpy(self.slow[g])
        u = self.velocity[g]
        u.mul_(cfg.outer_momentum).add_((slow - avg) / cfg.lr)
        slow.sub_(cfg.outer_lr * cfg.lr * u)
        avg.copy_(slow)

    def _sync(self, step: int) -> bool:
        cfg = self.cfg
        return is_sync_step(step, cfg.steps, cfg.tau, cfg.warmup_steps)

    def after_backward(self, step):
        return []

    def before_step(self, step):
        if self.compressed is not None:
            self.compressed.step = step  # the exchange after this step's update records into row ``step``
        if self.freezer is not None:
            self._freeze_after_average(step)
        return []

    def barrier_for_wait(self, step):
        return self.comm if self._sync(step) else None

    def after_update(self, step):
        if not self._sync(step):
            return []
        if self._synced is not None:
            self._synced[step] = 1
        return self._exchanges

    def describe(self):
        cfg = self.cfg
        return super().describe() | {
            "local_steps": cfg.tau,
            "warmup_steps": cfg.warmup_steps,
            "outer_momentum": cfg.outer_momentum,
            "outer_lr": cfg.outer_lr,
        }

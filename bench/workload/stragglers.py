"""Straggler injection: slow chosen ranks' compute by a factor, and record the delay apart from real compute.

A rank with slowdown factor f sleeps (f - 1) * c after a step whose forward + backward took c seconds, so it
looks like a machine f times slower. Sleeping rather than spinning leaves the core to other ranks, as a slow
*remote* node would (on an oversubscribed host, spinning would slow everyone). The delay goes to
``timing/injected``, never into forward/backward.

- ``--straggler 1:3,4:1.5``: rank 1 is 3x slower, rank 4 1.5x, every step.
- ``--straggler-dist lognormal:SIGMA``: every rank, every step, an extra factor max(1, exp(SIGMA z)) with
  z ~ N(0, 1) drawn from (seed, rank, step): reproducible, independent across ranks and steps.
Both multiply when given together.
"""

from __future__ import annotations

import math
import time

import numpy as np

from bench.runtime.errors import UsageError
from bench.workload.streams import Salt, stream


def parse_factors(text: str, world_size: int) -> dict[int, float]:
    """``"1:3,2:1.5"`` -> {1: 3.0, 2: 1.5}; ranks must exist and factors be >= 1."""
    out: dict[int, float] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        try:
            rank_text, factor_text = item.split(":")
            rank, factor = int(rank_text), float(factor_text)
        except ValueError:
            raise UsageError(f"--straggler '{item}': expected RANK:FACTOR, e.g. 1:3") from None
        if not 0 <= rank < world_size:
            raise UsageError(f"--straggler rank {rank} is out of range for {world_size} ranks")
        if factor < 1:
            raise UsageError(f"--straggler factor {factor} for rank {rank} must be >= 1 (a slowdown)")
        out[rank] = factor
    return out


def parse_dist(text: str, option: str = "--straggler-dist") -> float:
    """``"lognormal:0.5"`` -> sigma 0.5; empty -> 0 (no random slowdown)."""
    if not text:
        return 0.0
    kind, _, value = text.partition(":")
    try:
        sigma = float(value)
    except ValueError:
        sigma = -1.0
    if kind != "lognormal" or not 0 <= sigma < math.inf:
        raise UsageError(f"{option} '{text}': expected lognormal:SIGMA with finite SIGMA >= 0")
    return sigma


def random_factor(seed: int, rank: int, step: int, sigma: float) -> float:
    if sigma == 0:
        return 1.0
    z = stream(seed, rank, step, salt=Salt.STRAGGLER).standard_normal()
    return max(1.0, float(np.exp(sigma * z)))


class Straggler:
    def __init__(self, cfg, rank: int, world_size: int):
        self.static = parse_factors(cfg.straggler, world_size).get(rank, 1.0)
        self.sigma = parse_dist(cfg.straggler_dist)
        self.seed, self.rank = cfg.seed, rank

    @property
    def active(self) -> bool:
        return self.static > 1.0 or self.sigma > 0

    def factor(self, step: int) -> float:
        return self.static * random_factor(self.seed, self.rank, step, self.sigma)

    def delay(self, step: int, compute_s: float) -> float:
        """Sleep for the extra time of this step and return it (seconds)."""
        extra = (self.factor(step) - 1.0) * compute_s
        if extra > 0:
            time.sleep(extra)
        return extra

"""Strategies: the narrow hooks by which each way of keeping replicas in step plugs into the one driver loop.

A strategy decides the rank layout (its Topology) and the communication around a step; the driver owns the
loop, the model, the data and the clock, and times every exchange a strategy hands it (kernels never time
themselves). Register new strategies in :data:`REGISTRY`.
"""

from __future__ import annotations

from bench.strategies.base import Exchange, Strategy
from bench.strategies.fedavg import FedAvgStrategy
from bench.strategies.localsgd import LocalSGDStrategy
from bench.strategies.ps import PSStrategy, SSPStrategy
from bench.strategies.ring import RingStrategy

REGISTRY: dict[str, type[Strategy]] = {
    "ring": RingStrategy,
    "localsgd": LocalSGDStrategy,
    "ps": PSStrategy,
    "ssp": SSPStrategy,
    "fedavg": FedAvgStrategy,
}

__all__ = ["REGISTRY", "Exchange", "Strategy"]

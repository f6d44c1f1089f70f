"""Strategies: the narrow hooks by which each way of keeping replicas in step plugs into a schedule.

A strategy decides the rank layout (its Topology), its schedule (lock-step, decoupled or rounds) and the
communication around a step; the schedules own the loop, the model, the data and the clock, and time every
exchange a strategy hands them (kernels never time themselves). Register new strategies in :data:`REGISTRY`:
the name, and where its class lives (imported only when a run uses it, so the command line and the sweep planner
know every name without importing torch or starting MPI).
"""

from __future__ import annotations

from importlib import import_module

REGISTRY: dict[str, str] = {
    "ring": "bench.strategies.ring:RingStrategy",
    "localsgd": "bench.strategies.localsgd:LocalSGDStrategy",
    "ps": "bench.strategies.ps.strategy:PSStrategy",
    "ssp": "bench.strategies.ps.strategy:SSPStrategy",
    "fedavg": "bench.strategies.fedavg.strategy:FedAvgStrategy",
    "ddp": "bench.strategies.ddp:DdpStrategy",
}
NAMES = tuple(REGISTRY)
ROWS = {name: "round" if name == "fedavg" else "step" for name in REGISTRY}
"""What one row of a run's results is for each strategy (a round of federated averaging, else a step)."""
PS_MODE_OF = {"ssp": "ssp"}
"""Strategies that are ``ps`` with a fixed ``--ps-mode`` (``--strategy ssp`` is ``--strategy ps --ps-mode ssp``)."""


def strategy_class(name: str):
    module, cls = REGISTRY[name].split(":")
    return getattr(import_module(module), cls)

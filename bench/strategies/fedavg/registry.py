"""The FL algorithms by their ``--fl-algorithm`` name, the one place that maps a name to its class, and their
composition with FedProx's client objective and FedOpt's server update. Imports every algorithm module, so
:mod:`bench.strategies.fedavg.algorithm` (the base hooks) imports none of them: no import cycle."""

from __future__ import annotations

from bench.strategies.fedavg.algorithm import FedAvg, FedOpt, FedProx
from bench.strategies.fedavg.drift import FedNova, Scaffold
from bench.strategies.fedavg.dynamic import FedDyn
from bench.strategies.fedavg.fedlama import FedLama
from bench.strategies.fedavg.partial import PartialTraining
from bench.strategies.fedavg.width import WidthReduction

ALGORITHMS: dict[str, type[FedAvg]] = {
    "fedavg": FedAvg,
    "fednova": FedNova,
    "scaffold": Scaffold,
    "fedlama": FedLama,
    "feddyn": FedDyn,
    "partial": PartialTraining,
    "width": WidthReduction,
}


def algorithm_class(cfg) -> type[FedAvg]:
    """The class of ``--fl-algorithm`` (before FedProx or FedOpt compose with it): its class-level facts
    (series it records, memory it keeps per host) are known before the run builds it."""
    return ALGORITHMS[cfg.fl_algorithm]


def algorithm_for(cfg, size: int, client_sizes=()) -> FedAvg:
    """``--fl-algorithm``: SCAFFOLD or FedNova (:mod:`bench.strategies.fedavg.drift`; FedNova with FedProx's
    objective when ``--fedprox-mu`` > 0), or FedAvg with FedProx's client objective (``--fedprox-mu`` > 0) and
    FedOpt's server update (``--server-opt`` avgm or adam) where asked for; the two compose (each overrides a
    different hook). Combinations the papers do not define are refused before the run
    (:mod:`bench.strategies.fedavg.checks`)."""
    base = algorithm_class(cfg)
    chosen = [cls for cls, on in ((FedProx, cfg.fedprox_mu > 0), (FedOpt, cfg.server_opt != "avg")) if on]
    if base is not FedAvg:
        chosen = chosen[:1] if chosen[:1] == [FedProx] else []
    if not chosen:
        return base(cfg, size, client_sizes)
    bases = (*chosen, base) if base is not FedAvg else tuple(chosen)
    cls = bases[0] if len(bases) == 1 else type("".join(c.__name__ for c in bases), bases, {})
    return cls(cfg, size, client_sizes)

"""FedAvg's string options parsed once into typed values (:class:`Federated`), after validation; the client
hosts, the aggregator, the checks and the summary read these, never the strings. Pure (numpy only): built before
MPI starts, so a malformed option fails identically on every rank."""

from __future__ import annotations

from dataclasses import dataclass

from bench.strategies.fedavg.byzantine import Attack, parse_byzantine
from bench.strategies.fedavg.needs import needs
from bench.strategies.fedavg.robust import Rule, parse_aggregator
from bench.strategies.fedavg.tiers import Tiers, parse_tiers


@dataclass(frozen=True)
class Selection:
    """``--selection``: uniform without replacement weighted by n_k (McMahan et al. 2017), ``size``: with
    replacement, probability n_k / n, the draws weighted in a plain mean (Li et al. 2020, scheme I), or
    ``power-of-choice:D``: D candidates by n_k, the m with the highest local loss kept (Cho et al. 2022)."""

    spec: str
    by_size: bool = False
    candidates: int = 0  # power-of-choice's D; 0 for the others

    @property
    def uniform(self) -> bool:
        return not self.by_size and not self.candidates


def parse_selection(spec: str, clients: int, cohort: int) -> Selection:
    """``--selection`` as a :class:`Selection`; ValueError naming the accepted forms (m <= D <= K) otherwise."""
    name, _, count = spec.partition(":")
    if name == "uniform" and not count:
        return Selection(spec)
    if name == "size" and not count:
        return Selection(spec, by_size=True)
    if name == "power-of-choice" and count.isdigit() and cohort <= int(count) <= clients:
        return Selection(spec, candidates=int(count))
    raise ValueError(
        f"--selection {spec!r}: expected uniform, size or power-of-choice:D with m <= D <= --clients (m = {cohort} "
        "clients per round here)"
    )


def cohort_size(clients: int, fraction: float) -> int:
    """m = max(1, round(C K)): the clients sampled per round (McMahan et al. 2017, Algorithm 1)."""
    return max(1, int(round(fraction * clients)))


@dataclass(frozen=True)
class Federated:
    """The federated options of a run, typed."""

    rule: Rule
    attack: Attack | None
    selection: Selection
    cohort: int
    tiers: Tiers | None = None  # --client-tiers (None: every client strong)


def resolve(cfg) -> Federated:
    """Parse ``--aggregator``, ``--byzantine``, ``--selection`` and the tiers (ValueError with the option's accepted
    forms)."""
    cohort = cohort_size(cfg.clients, cfg.fraction)
    return Federated(
        parse_aggregator(cfg.aggregator),
        parse_byzantine(cfg.byzantine),
        parse_selection(cfg.selection, cfg.clients, cohort),
        cohort,
        parse_tiers(
            cfg.client_tiers,
            cfg.tier_frozen,
            cfg.tier_speed,
            cfg.model,
            cfg.tier_width,
            cfg.clients,
            needs(cfg).tier_layers,
        ),  # fmt: skip
    )

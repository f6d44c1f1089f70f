"""Usage checks of the federated algorithm options, before MPI starts (numpy only): combinations the papers do not
define, or that our schedules cannot run, are refused with one message naming the way out."""

from __future__ import annotations

import dataclasses

from bench.runtime.errors import UsageError
from bench.strategies.fedavg.needs import NEEDS, client_placement, needs


def check_federated(cfg) -> None:
    try:
        chosen = cfg.federated
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    per_client = [
        (needs(cfg).each_update, f"--fl-algorithm {cfg.fl_algorithm}"),
        (not chosen.rule.streamed, f"--aggregator {cfg.aggregator}"),
    ]
    for on, what in per_client:
        if on and cfg.aggregation != "client":
            raise UsageError(f"{what} needs each client's update at the aggregator: --aggregation client")
        if on and cfg.exchange_compression.on:
            raise UsageError(f"{what} does not run with --compress yet: the uploads are sent uncompressed")
    if 0 < cfg.partition_over < cfg.clients:
        raise UsageError(f"--partition-over {cfg.partition_over} is below --clients {cfg.clients}: the run's clients "
                         "take the first K of N parts (N >= K)")  # fmt: skip
    if needs(cfg).tier_layers and chosen.tiers is None:
        raise UsageError(f"--fl-algorithm {cfg.fl_algorithm} trains the weaker tiers differently: give --client-tiers "
                         "(strong:1 is FedAvg)")  # fmt: skip
    _check_selection(cfg, chosen.selection)
    _check_algorithm(cfg, chosen)
    _check_cohort(cfg, chosen)


def _check_selection(cfg, selection) -> None:
    if selection.candidates and (cfg.aggregation == "tree" or cfg.on_client_timeout == "drop"):
        raise UsageError(
            "--selection power-of-choice asks every candidate's host for its losses first: --aggregation client or "
            "host, and --on-client-timeout abort"
        )


def _default(cfg, option: str):
    """The option's default, read from the config's own dataclass (this module is imported by config.py)."""
    return {f.name: f.default for f in dataclasses.fields(cfg)}[option]


def _check_algorithm(cfg, chosen) -> None:
    """What the chosen algorithm needs from the other options (:data:`needs.NEEDS`: no algorithm named here)."""
    owners: dict[str, list[str]] = {}
    for name, facts in NEEDS.items():
        for option in facts.own_options:
            owners.setdefault(option, []).append(name)
    for option, names in owners.items():
        if cfg.fl_algorithm not in names and getattr(cfg, option) != _default(cfg, option):
            raise UsageError(f"--{option.replace('_', '-')} applies to --fl-algorithm {' or '.join(names)}")
    need = needs(cfg)
    if not need.own_server_update:
        return
    name = f"--fl-algorithm {cfg.fl_algorithm}"
    if cfg.server_opt != "avg":
        raise UsageError(f"{name} has its own server update: --server-opt avg")
    if not chosen.rule.streamed:
        raise UsageError(f"{name} folds every update into its own sums: --aggregator mean")
    fixed = cfg.optimizer == "sgd" and cfg.lr_schedule == "constant" and not cfg.lr_warmup_steps
    if need.fixed_rate_sgd and not fixed:
        raise UsageError(
            f"{name}'s client maths assumes SGD at a fixed rate ({need.fixed_rate_sgd}): "
            "--optimizer sgd, --lr-schedule constant, no --lr-warmup-steps"
        )
    refusals = (
        (need.no_fedprox, cfg.fedprox_mu > 0, "--fedprox-mu 0"),
        (need.state_on_host, client_placement(cfg) != "static", "--placement static"),
        (need.local_steps, cfg.local_steps <= 0, "give --local-steps T (e.g. 10)"),
        (need.uniform_selection, not chosen.selection.uniform, "--selection uniform"),
        (need.no_byzantine, chosen.attack is not None, "no --byzantine"),
    )
    for reason, violated, way_out in refusals:
        if reason and violated:
            raise UsageError(f"{name} {reason}: {way_out}")


def _check_cohort(cfg, chosen) -> None:
    """A robust rule must be defined for the cohort a round samples (dropouts can still leave fewer: the round then
    keeps the global model, see :class:`bench.strategies.fedavg.robust.CohortAggregate`)."""
    rule = chosen.rule
    if chosen.cohort < rule.least_cohort():
        raise UsageError(
            f"--aggregator {cfg.aggregator} needs at least {rule.least_cohort()} clients per round "
            f"(Krum: n > 2F + 2), but --clients {cfg.clients} --fraction {cfg.fraction} samples {chosen.cohort}"
        )
    if chosen.selection.by_size and not rule.streamed:
        raise UsageError("--selection size weighs repeated draws in a mean: --aggregator mean")

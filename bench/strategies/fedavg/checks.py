"""Usage checks of the federated algorithm options, before MPI starts (numpy only): combinations the papers do not
define, or that our schedules cannot run, are refused with one message naming the way out."""

from __future__ import annotations

from bench.config import client_placement
from bench.runtime.errors import UsageError


def check_federated(cfg) -> None:
    from bench.strategies.fedavg.byzantine import parse_byzantine
    from bench.strategies.fedavg.robust import parse_aggregator

    try:
        rule = parse_aggregator(cfg.aggregator)
        parse_byzantine(cfg.byzantine)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    per_client = [
        (cfg.fl_algorithm != "fedavg", f"--fl-algorithm {cfg.fl_algorithm}"),
        (rule.name != "mean", f"--aggregator {cfg.aggregator}"),
    ]
    for on, what in per_client:
        if on and cfg.aggregation != "client":
            raise UsageError(f"{what} needs each client's update at the aggregator: --aggregation client")
        if on and cfg.compress != "none":
            raise UsageError(f"{what} does not run with --compress yet: the uploads are sent uncompressed")
    _check_selection(cfg)
    _check_algorithm(cfg, rule)
    _check_cohort(cfg, rule)


def _check_selection(cfg) -> None:
    name, _, count = cfg.selection.partition(":")
    if name in ("uniform", "size") and not count:
        return
    m = max(1, int(round(cfg.fraction * cfg.clients)))
    if name != "power-of-choice" or not count.isdigit() or not m <= int(count) <= cfg.clients:
        raise UsageError(
            f"--selection {cfg.selection!r}: expected uniform, size or power-of-choice:D with m <= D <= --clients "
            f"(m = {m} clients per round here)"
        )
    if cfg.aggregation == "tree" or cfg.on_client_timeout == "drop":
        raise UsageError(
            "--selection power-of-choice asks every candidate's host for its losses first: --aggregation client or "
            "host, and --on-client-timeout abort"
        )


def _check_algorithm(cfg, rule) -> None:
    if cfg.fedlama_phi != 2 and cfg.fl_algorithm != "fedlama":
        raise UsageError("--fedlama-phi applies to --fl-algorithm fedlama")
    if cfg.fl_algorithm == "fedavg":
        return
    name = f"--fl-algorithm {cfg.fl_algorithm}"
    if cfg.server_opt != "avg":
        raise UsageError(f"{name} has its own server update: --server-opt avg")
    if rule.name != "mean":
        raise UsageError(f"{name} folds every update into its own sums: --aggregator mean")
    if cfg.fl_algorithm in ("scaffold", "fednova"):
        fixed = cfg.optimizer == "sgd" and cfg.lr_schedule == "constant" and not cfg.lr_warmup_steps
        if not fixed:
            raise UsageError(
                f"{name}'s client maths assumes SGD at a fixed rate (the variate's K eta, FedNova's a_i): "
                "--optimizer sgd, --lr-schedule constant, no --lr-warmup-steps"
            )
    if cfg.fl_algorithm == "scaffold":
        if cfg.fedprox_mu > 0:
            raise UsageError("--fl-algorithm scaffold corrects drift with control variates: --fedprox-mu 0")
        if client_placement(cfg) != "static":
            raise UsageError(
                "--fl-algorithm scaffold keeps each client's control variate on the host that trains it: "
                "--placement static"
            )
        if cfg.selection != "uniform":
            raise UsageError("--fl-algorithm scaffold averages uniformly over the cohort: --selection uniform")
    if cfg.fl_algorithm == "fedlama":
        _check_fedlama(cfg)


def _check_fedlama(cfg) -> None:
    if cfg.local_steps <= 0:
        raise UsageError("--fl-algorithm fedlama counts local work in steps: give --local-steps T (e.g. 10)")
    for on, what in ((cfg.selection != "uniform", "--selection uniform"), (bool(cfg.byzantine), "no --byzantine")):
        if on:
            raise UsageError(f"--fl-algorithm fedlama keeps a cohort's local layers across rounds: {what}")


def _check_cohort(cfg, rule) -> None:
    """A robust rule must be defined for the cohort a round samples (dropouts can still leave fewer: the round then
    keeps the global model, see :class:`bench.strategies.fedavg.robust.CohortAggregate`)."""
    m = max(1, int(round(cfg.fraction * cfg.clients)))
    if m < rule.least_cohort():
        raise UsageError(
            f"--aggregator {cfg.aggregator} needs at least {rule.least_cohort()} clients per round "
            f"(Krum: n > 2F + 2), but --clients {cfg.clients} --fraction {cfg.fraction} samples {m}"
        )
    if cfg.selection == "size" and rule.name != "mean":
        raise UsageError("--selection size weighs repeated draws in a mean: --aggregator mean")

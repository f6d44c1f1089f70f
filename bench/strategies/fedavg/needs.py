"""What each FL algorithm needs from the other options, as data: the option checks (:mod:`checks`) and the
placement default (:func:`client_placement`) read it before MPI starts, without importing the
algorithms (they import torch). One entry per ``--fl-algorithm`` name, as :mod:`registry` has one class each.
A field holds the reason, as the refusal prints it; empty: no such need."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Needs:
    own_server_update: bool = True  # refuses --server-opt and robust aggregators (it folds into its own sums)
    each_update: bool = True  # needs each client's update at the aggregator (--aggregation client, uncompressed)
    own_options: tuple[str, ...] = ()  # options only this algorithm reads (refused with any other)
    fixed_rate_sgd: str = ""  # its client maths assumes SGD at a fixed rate
    state_on_host: str = ""  # per-client state lives on the host that trains the client: placement static
    no_fedprox: str = ""  # its own drift correction replaces FedProx's term
    uniform_selection: str = ""
    local_steps: str = ""  # counts local work in steps
    no_byzantine: str = ""
    tier_layers: bool = False  # reads the tiers' frozen layer counts (needs --client-tiers)


NEEDS = {
    "fedavg": Needs(own_server_update=False, each_update=False),
    "fednova": Needs(fixed_rate_sgd="FedNova's a_i"),
    "scaffold": Needs(
        fixed_rate_sgd="the variate's K eta",
        state_on_host="keeps each client's control variate on the host that trains it",
        no_fedprox="corrects drift with control variates",
        uniform_selection="averages uniformly over the cohort",
    ),
    "fedlama": Needs(
        own_options=("fedlama_phi",),
        local_steps="counts local work in steps",
        uniform_selection="keeps a cohort's local layers across rounds",
        no_byzantine="keeps a cohort's local layers across rounds",
    ),
    "feddyn": Needs(
        own_options=("feddyn_alpha",),
        state_on_host="keeps each client's gradient state on the host that trains it",
        no_fedprox="has its own proximal term (alpha)",
        uniform_selection="averages uniformly over the cohort",
    ),
    "partial": Needs(own_options=("tier_frozen",), tier_layers=True),  # each layer averaged over its trainers
    "width": Needs(  # each parameter entry averaged over the clients whose sub-model holds it
        own_options=("tier_frozen", "tier_width"),  # a ratio: --tier-width, or sqrt of partial's parameter share
        tier_layers=True,
        no_byzantine="trains sub-models of other shapes than the attacks corrupt",
    ),
}


def needs(cfg) -> Needs:
    return NEEDS[cfg.fl_algorithm]


def client_state_on_host(cfg) -> str:
    """fedavg: why a client's state must stay on the host that trains it ('' if nothing does)."""
    kept = NEEDS[cfg.fl_algorithm].state_on_host if cfg.fl_algorithm in NEEDS else ""
    if kept:
        return f"--fl-algorithm {cfg.fl_algorithm} {kept}"
    if cfg.exchange_compression.error_feedback:
        return f"--compress {cfg.compress} keeps each client's error-feedback memory on the host that trains it"
    return ""


def client_placement(cfg) -> str:
    """fedavg's placement: ``--placement`` as given; ``auto`` (the default) resolves to ``static`` where a client
    keeps state on its host (:func:`client_state_on_host`), else ``balanced``. Stored resolved in the file."""
    if cfg.placement != "auto":
        return cfg.placement
    return "static" if client_state_on_host(cfg) else "balanced"


def placement_line(cfg) -> str:
    """Which placement ran, and why when ``auto`` chose it (a default that resolved a conflict says so)."""
    chosen = client_placement(cfg)
    if cfg.placement != "auto":
        return chosen
    why = client_state_on_host(cfg)
    return f"{chosen} (auto: {why})" if why else f"{chosen} (auto: no client state kept on a host)"

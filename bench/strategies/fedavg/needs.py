"""What each FL algorithm needs from the other options, as data: the option checks (:mod:`checks`) and the
placement default (:func:`bench.config.client_placement`) read it before MPI starts, without importing the
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
}


def needs(cfg) -> Needs:
    return NEEDS[cfg.fl_algorithm]

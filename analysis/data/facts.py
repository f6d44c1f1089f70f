"""What a run's strategy is, read from its results file: the facts the strategy declared
(``bench.strategies.Facts``, written as root attributes since schema 3's second revision: ``schedule``,
``row_unit``, ``exchange``, ``computing``, ``overlapped``, ``options``), so that no table, figure or model keeps a
list of strategy names. Files written before a fact was recorded read it from :data:`BEFORE_FACTS`, the one
compatibility table keyed by strategy name.
"""

from __future__ import annotations

from analysis.data.load import RunResults

_FEDERATED = ("fl_algorithm", "aggregator", "byzantine", "selection", "local_steps", "compress", "error_feedback")
_STEPPED = ("steps", "accumulate_steps", "straggler", "straggler_dist", "trace")
BEFORE_FACTS = {
    "ring": ("step", "allreduce", "all", False, (*_STEPPED, "overlap", "compress", "error_feedback", "bucket_mb")),
    "localsgd": ("step", "periodic", "all", False, (*_STEPPED, "compress", "error_feedback", "local_steps")),
    "ps": ("step", "parameter_server", "workers", False, (*_STEPPED, "overlap", "compress", "ps_mode", "servers")),
    "ssp": ("step", "parameter_server", "workers", False, (*_STEPPED, "compress", "servers", "staleness")),
    "fedavg": ("round", "federated", "clients", False, _FEDERATED),
    "ddp": ("step", "allreduce", "all", True, (*_STEPPED, "bucket_mb")),
}
"""Compatibility table for files that do not record their strategy's facts: strategy -> (row unit, exchange,
computing ranks, always overlapped, the options that apply to it). An unknown strategy reads as ring's."""

DECOUPLED_BEFORE_FACTS = {("ps", "async"), ("ssp", "sync"), ("ssp", "async"), ("ssp", "ssp")}
"""(strategy, ps_mode) pairs whose workers ran unsynchronised steps, for files without ``schedule`` (ssp runs
stored ps_mode "sync" before ``--ps-mode ssp`` existed)."""


def _before(run: RunResults) -> tuple:
    return BEFORE_FACTS.get(run.strategy, BEFORE_FACTS["ring"])


def schedule(run: RunResults) -> str:
    """``rounds`` (an aggregator: rows are rounds), ``decoupled`` or ``lockstep``, as the strategy declared it."""
    if run.attrs.get("schedule"):
        return str(run.attrs["schedule"])
    if "aggregator" in (run.attrs.get("roles") or []):
        return "rounds"
    mode = run.config.get("ps_mode", "sync")  # pragma: no mutate (absent: not decoupled either way)
    if (run.strategy, mode) in DECOUPLED_BEFORE_FACTS:
        return "decoupled"
    return "lockstep"


def row_unit(run: RunResults) -> str:
    """``step`` or ``round``: what one row of the run's series is."""
    return str(run.attrs.get("row_unit") or ("round" if schedule(run) == "rounds" else "step"))


def exchange(run: RunResults) -> str:
    """How the run's communication is modelled: allreduce, periodic, parameter_server or federated."""
    return str(run.attrs.get("exchange") or _before(run)[1])


def computing(run: RunResults) -> str:
    """Which ranks train: all, workers (past --servers) or clients (every rank but the aggregator)."""
    return str(run.attrs.get("computing") or _before(run)[2])


def overlapped(run: RunResults) -> bool:
    """The run's communication could run beside its backward pass (``ring --overlap``, ``ps --overlap``, ddp)."""
    if "overlapped" in run.attrs:
        return bool(run.attrs["overlapped"])
    return _before(run)[3] or bool(run.config.get("overlap"))


def applies(run: RunResults, option: str) -> bool:
    """The option means something to the run's strategy (and the strategy does not fix it)."""
    options = run.attrs.get("options")
    return option in (options if options is not None else _before(run)[4])

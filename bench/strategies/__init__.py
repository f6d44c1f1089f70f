"""Strategies: the narrow hooks by which each way of keeping replicas in step plugs into a schedule.

A strategy decides the rank layout (its Topology), its schedule (lock-step, decoupled or rounds) and the
communication around a step; the schedules own the loop, the model, the data and the clock, and time every
exchange a strategy hands them (kernels never time themselves). Register new strategies in :data:`REGISTRY`:
where the class lives (imported only when a run uses it) and its :class:`Facts`, pure data, so the command line,
the sweep planner and the results file know every strategy without importing torch or starting MPI.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

STEPPED = frozenset({"steps", "stragglers", "accumulation", "trace"})
"""Option families of a strategy whose rows are steps (``--steps``, ``--global-batch-size``, stragglers,
``--accumulate-steps``, ``--trace``): every strategy but fedavg, whose rows are rounds."""

COMPRESSIBLE = frozenset({"compress", "own messages"})
"""Strategies whose messages are the suite's own point-to-point ones (every one but ddp, whose are gloo's): their
messages can be compressed (``--compress``) and paced over an emulated link (``--emulate-link``)."""


@dataclass(frozen=True)
class Facts:
    """What a strategy is, declared once: the command line checks options against ``takes``, the results file
    records the rest (root attributes, :meth:`attributes`), and ``analysis/`` reads them from the file."""

    where: str
    """``module:Class`` of its :class:`bench.strategies.base.Strategy`."""
    rows: str
    """What one row of its results is: ``step`` or ``round``."""
    schedule: str
    """``lockstep``, ``decoupled`` or ``rounds`` (:mod:`bench.run`); see :meth:`schedule_for`."""
    exchange: str
    """How analysis models its communication: ``allreduce`` (every step), ``periodic`` (an all-reduce every tau
    steps), ``parameter_server`` (push and pull per worker) or ``federated`` (upload and download per client)."""
    computing: str
    """Which ranks train: ``all``, ``workers`` (ranks past ``--servers``) or ``clients`` (every rank but 0)."""
    takes: frozenset
    """Option families it takes beyond the common ones (the ``applies`` of :func:`bench.config.opt`)."""
    overlapped: bool = False
    """Its gradients always leave during the backward pass (ddp); others only with ``--overlap``."""
    ps_mode: str = ""
    """A fixed ``--ps-mode`` (``--strategy ssp`` is ``--strategy ps --ps-mode ssp``); '' where the option chooses."""

    logical_ranks: bool = False
    """Its work is spread over logical units that any number of ranks can host (fedavg's clients): a checkpoint
    resumes on another rank count (:mod:`bench.run.replacement`); the others need the rank count they stopped on."""

    def schedule_for(self, ps_mode: str) -> str:
        """The schedule a run has: a parameter server in async or ssp mode runs decoupled, in sync lock-step."""
        if "parameter server" in self.takes and ps_mode != "sync":  # ssp: bench.config fixes its mode
            return "decoupled"
        return self.schedule


_STEP = STEPPED | {"lockstep", "buckets"}
REGISTRY: dict[str, Facts] = {
    "ring": Facts(
        "bench.strategies.ring:RingStrategy", "step", "lockstep", "allreduce", "all",
        _STEP | COMPRESSIBLE
        | {"overlap", "overlap_progress", "allreduce_compression", "allreduce", "staging", "compress_on", "freeze"},
    ),
    "localsgd": Facts(
        "bench.strategies.localsgd:LocalSGDStrategy", "step", "lockstep", "periodic", "all",
        _STEP | COMPRESSIBLE | {"localsgd", "local_steps", "allreduce_compression", "allreduce", "staging", "freeze"},
    ),
    "ps": Facts(
        "bench.strategies.ps.strategy:PSStrategy", "step", "lockstep", "parameter_server", "workers",
        STEPPED | COMPRESSIBLE | {"lockstep", "overlap", "parameter server", "staging", "freeze"},
    ),
    "ssp": Facts(
        "bench.strategies.ps.strategy:SSPStrategy", "step", "decoupled", "parameter_server", "workers",
        STEPPED | COMPRESSIBLE | {"parameter server", "staleness", "staging"}, ps_mode="ssp",
    ),
    "fedavg": Facts(
        "bench.strategies.fedavg.strategy:FedAvgStrategy", "round", "rounds", "federated", "clients",
        COMPRESSIBLE | {"fedavg", "local_steps"}, logical_ranks=True,
    ),
    "ddp": Facts(
        "bench.strategies.ddp:DdpStrategy", "step", "lockstep", "allreduce", "all", _STEP | {"freeze"},
        overlapped=True,
    ),
}  # fmt: skip
NAMES = tuple(REGISTRY)


def facts(name: str) -> Facts:
    return REGISTRY[name]


def taking(family: str) -> tuple[str, ...]:
    """The strategies that take an option family (for messages: "applies to --strategy ring, ps")."""
    return tuple(name for name, f in REGISTRY.items() if family in f.takes)


def named_for_mode(ps_mode: str) -> str:
    """The strategy whose fixed ``--ps-mode`` is this one ('' if none): ``ps --ps-mode ssp`` is ``ssp``."""
    return next((name for name, f in REGISTRY.items() if f.ps_mode and f.ps_mode == ps_mode), "")


def strategy_class(name: str):
    module, cls = REGISTRY[name].where.split(":")
    return getattr(import_module(module), cls)

"""The three schedules a strategy runs under (a strategy declares which: ``Strategy.schedule``): lock-step steps
(:mod:`lockstep`), decoupled steps ended by messages (:mod:`decoupled`), federated rounds (:mod:`rounds`). Each
drives one :class:`bench.run.context.RunContext` through its public methods; :mod:`stepper` is the one training
step the first two share."""

from __future__ import annotations

from importlib import import_module

SCHEDULES = {
    "lockstep": "bench.run.lockstep:train_lockstep",
    "decoupled": "bench.run.decoupled:train_decoupled",
    "rounds": "bench.run.rounds:train_rounds",
}


UNITS = {"lockstep": "step", "decoupled": "step", "rounds": "round"}
"""What one row of the Recorder is under each schedule."""


def unit_of(name: str) -> str:
    return UNITS[name]


def schedule_for(name: str):
    module, fn = SCHEDULES[name].split(":")
    return getattr(import_module(module), fn)

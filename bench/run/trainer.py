"""A run ready to train: its context, the one training step, and its strategy's schedule. ``python -m bench train``
calls :meth:`Trainer.train`; the MPI tests also drive single steps through :meth:`Trainer.step` to compare them
with serial oracles."""

from __future__ import annotations

from bench.run import schedule_for, unit_of
from bench.run.context import RunContext
from bench.run.stepper import Stepper


class Trainer:
    def __init__(self, run, comm, attrs: dict, stop):
        self.run = run
        unit = unit_of(run.strategy.schedule)
        rows = run.cfg.rounds if unit == "round" else run.cfg.steps
        self.ctx = RunContext(run, comm, attrs, stop, rows, unit)
        run.strategy.declare(self.ctx.rec)
        self._stepper = None

    @property
    def rec(self):
        return self.ctx.rec

    def step(self, step: int, t0: float) -> None:
        """One step of a stepping strategy (lock-step or decoupled), timed into the Recorder's row ``step``."""
        if self._stepper is None:
            self._stepper = Stepper(self.ctx)
        self._stepper.step(step, t0)

    def train(self) -> int:
        return schedule_for(self.run.strategy.schedule)(self.ctx)

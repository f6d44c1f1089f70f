"""Divergence is a result, not a silent success: a run whose training loss (fedavg: global model) becomes
non-finite stops at the next agreed row with status ``diverged``, keeps its results file, names the first row and
rank where it happened, and exits with :data:`EXIT_DIVERGED`.

Each rank notes the first row where it saw a non-finite value. Lock-step and rounds runs learn of it at the next
stop agreement (every ``STOP_CHECK_EVERY`` rows, and after the last): one MIN over the code ``row * size + rank``
(world rank), so the earliest row wins and, within a row, the lowest rank. Decoupled runs stop through their
servers, as for a signal, and compare the codes at the end.
"""

from __future__ import annotations

import math

import numpy as np

EXIT_DIVERGED = 3
"""Exit code of a diverged run (2 is bad input, 1 a failure, 124 a timeout)."""

NOT_DIVERGED = int(np.iinfo(np.int64).max)


class Divergence:
    """This rank's first non-finite row, and the row and rank the ranks agreed on."""

    def __init__(self, rank: int, size: int):
        self.rank, self.size = rank, size
        self.row: int | None = None  # first row this rank saw a non-finite value
        self.detail = ""  # what it was, on this rank (e.g. "loss nan", "client 17's loss inf")
        self.agreed: tuple[int, int] | None = None  # (row, rank), once the ranks know

    def note(self, row: int, value: float, what: str = "loss", context: str = "") -> None:
        """Record ``value`` (``what`` it is) seen at ``row``; the first non-finite one counts."""
        if self.row is None and not math.isfinite(value):
            self.row, self.detail = row, f"{what} = {value}{context}"

    @property
    def code(self) -> int:
        return NOT_DIVERGED if self.row is None else self.row * self.size + self.rank

    def agree(self, code: int) -> bool:
        """Take the MIN of every rank's :attr:`code`; true if some rank diverged."""
        if code != NOT_DIVERGED and self.agreed is None:
            self.agreed = divmod(code, self.size)
        return self.agreed is not None

    def message(self, unit: str) -> str:
        """Where it happened, in words (this rank's detail when it is the rank named)."""
        row, rank = self.agreed
        detail = f": {self.detail}" if rank == self.rank and self.detail else ""
        return f"non-finite values at {unit} {row + 1} on rank {rank}{detail}"  # numbered from 1, as printed

"""nccl-tests' ``#wrong``: how many result elements differ from the reference, summed over ranks, per size and
implementation.

Every micro operation checks its result after the timed calls (against MPI's collective, a serial reference or
a closed form). ``python -m bench micro`` counts rather than stops, as nccl-tests does: the table shows a
``#wrong`` column beside each implementation's times, the file keeps the counts, and the run exits 1 when any
count is not zero, so a wrong kernel's timings are printed but never pass as a good run. Code that calls an
operation directly (tests, scripts) gets the strict form by default: the first wrong element raises.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI


def mismatches(got: np.ndarray, expect: np.ndarray, close: bool = False) -> int:
    """Elements of ``got`` that differ from ``expect`` (exactly, or beyond ``np.isclose`` with ``close``); a
    result of the wrong length counts every element of the longer as wrong."""
    got, expect = np.asarray(got), np.asarray(expect)
    if got.shape != expect.shape:
        return int(max(got.size, expect.size))
    same = np.isclose(got, expect) if close else got == expect
    return int(got.size - np.count_nonzero(same))


class WrongCounts:
    """Per implementation, the wrong elements of each size in order (a collective: every rank records every
    check, with zero where it has nothing to compare)."""

    def __init__(self, comm, strict: bool = True):
        self.comm, self.strict = comm, strict
        self.counts: dict[str, list[int]] = {}

    def record(self, impl: str, wrong_here: int, what: str) -> int:
        """Sum this rank's ``wrong_here`` over ranks and keep it; strict: raise if it is not zero."""
        wrong = int(self.comm.allreduce(int(wrong_here), op=MPI.SUM))
        self.counts.setdefault(impl, []).append(wrong)
        if wrong and self.strict:
            raise RuntimeError(f"{what}: result differs from the reference ({wrong} wrong elements)")
        return wrong

    def total(self) -> int:
        return sum(sum(counts) for counts in self.counts.values())


def strict_or(checks: WrongCounts | None, comm) -> WrongCounts:
    """The caller's counter, or a strict one (operations called outside ``micro`` raise on a wrong result)."""
    return checks if checks is not None else WrongCounts(comm, strict=True)

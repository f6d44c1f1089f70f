"""Per-client state that a checkpoint writes incrementally.

SCAFFOLD keeps a control variate c_i per client, FedDyn a g_k, FedLAMA a model per client mid-block, compressed
uploads an error-feedback memory per (client, layer): with K clients that is K copies of the model, while a round
changes the few clients it sampled. Written whole at every checkpoint it made a SCAFFOLD checkpoint cost 2-5
rounds (bench/perf/BENCHMARKS.md). A :class:`ClientDict` remembers which entries changed since the last checkpoint
and where each of the others was last written, so that a checkpoint writes only what changed (``HELD``: per entry,
the row of the piece that holds it), and every ``FULL_EVERY``-th checkpoint writes everything again so that the
older pieces can go (:class:`bench.run.checkpoint.Checkpoints` keeps the folders back to the last full one).
"""

from __future__ import annotations

from contextlib import contextmanager

HELD = "#held"
"""Under a per-client dict's name in an incremental piece: for each key of its ``#keys``, the row whose piece
holds the entry (this piece's row where it was written now)."""

FULL_EVERY = 8
"""Every 8th checkpoint of a process (its first included) writes every entry: at most 8 checkpoint folders are kept,
and a resumed run's first checkpoint does not depend on pieces it did not write."""


class ClientDict(dict):
    """A dict of per-client state that records which keys were set since the last checkpoint. Entries must be
    replaced, not changed in place (an array updated in place is not seen): the suite's per-client state is
    assigned whole (``d[k] = new``), and tests/mpi/test_checkpoint.py resumes from incremental pieces bit for
    bit."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.changed: set = set(self)  # everything is new to the first checkpoint
        self.held: dict = {}  # key -> the row whose piece holds its entry

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.changed.add(key)

    def __ior__(self, other):
        self.update(other)
        return self

    def copy(self):
        """A plain dict of the same entries (a snapshot: it tracks nothing)."""
        return dict(self)

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args, **kwargs):
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def clear(self):
        super().clear()
        self.changed.clear()
        self.held.clear()

    def to_write(self, row: int, full: bool) -> list:
        """The keys whose entries a checkpoint at ``row`` writes (all if ``full``); from then on they are held
        there. Keys removed since (``del``, ``pop``, ``popitem``) drop out here, so those need no bookkeeping."""
        fresh = list(self) if full else [k for k in self if k in self.changed or k not in self.held]
        self.held = {k: self.held[k] for k in self if k in self.held} | {k: row for k in fresh}
        self.changed.clear()
        return fresh


_WRITING: list = [None]  # (row, full) while a checkpoint piece is being flattened, else None


@contextmanager
def writing_checkpoint(row: int, full: bool):
    """While flattening a checkpoint piece at ``row``: per-client dicts write what changed (or all if ``full``),
    and arrays are not copied (the piece is written at once, before the run goes on: a copy of 80 MB of control
    variates took 49 ms of a 220 ms checkpoint here). Outside it (``state_dict()`` for a comparison) everything is
    flattened whole and copied, with no side effect."""
    _WRITING[0] = (row, full)
    try:
        yield
    finally:
        _WRITING[0] = None


def checkpoint_in_progress():
    return _WRITING[0]

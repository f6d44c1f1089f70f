"""Uploads that do not block training: a finished client's model is copied into one of a few upload buffers and
sent with non-blocking sends, and the host goes on training its next client while the aggregator takes it.

``--upload-buffers N`` buffers (float32, one model each, plus a header): host memory for uploads is N x model
bytes, recorded in the results file. A host waits only when all N are still in flight (its uploads outrun the
aggregator), and at the end of the round for the last ones. N = 0 sends blocking, one client at a time.
Messages leave in the order they were posted, so the aggregator sees exactly the blocking order (MPI's
non-overtaking rule for one sender, tag and communicator): the result is bit-identical.
"""

from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

from bench.strategies.fedavg.protocol import HEADER_LEN, header_tag, update_tag


class UploadBuffers:
    def __init__(self, comm: MPI.Comm, layer_sizes: list[int], slots: int, tag_ub: int):
        self.comm, self.tag_ub = comm, tag_ub
        self.offsets = np.cumsum([0, *layer_sizes])
        # zeros, not empty: a FedLAMA upload fills only the layers it averages, and the streaming sum folds the
        # whole buffer (the other layers' sums are unused, but uninitialised memory made them NaN at times: a
        # RuntimeWarning seen once in CI, and a sum that depended on what the memory held)
        self.models = [np.zeros(self.offsets[-1], dtype=np.float32) for _ in range(slots)]
        self.heads = [np.empty(HEADER_LEN, dtype=np.float64) for _ in range(slots)]
        self.requests: list[list[MPI.Request]] = [[] for _ in range(slots)]
        self.messages: list[np.ndarray | None] = [None] * slots  # a compressed upload in flight from the slot
        self.next = 0

    @property
    def nbytes(self) -> int:
        return sum(m.nbytes for m in self.models)

    def layer(self, slot: int, i: int) -> np.ndarray:
        return self.models[slot][self.offsets[i] : self.offsets[i + 1]]

    def acquire(self) -> tuple[int, float]:
        """A free slot (the oldest, once its sends completed); returns (slot, seconds waited for it)."""
        slot = self.next
        self.next = (self.next + 1) % len(self.models)
        t = time.perf_counter()
        MPI.Request.Waitall(self.requests[slot])
        self.requests[slot] = []
        return slot, time.perf_counter() - t

    def post(self, slot: int, head: np.ndarray, layers, extra: np.ndarray | None = None, sizes=None) -> None:
        """Send the header (and the slot's ``layers`` of the model, each its first ``sizes[i]`` values where given:
        a sub-model's, then ``extra``: SCAFFOLD's variate change, kept alive by the slot) to the aggregator without
        waiting. No layers: a header alone (a dropped client)."""
        np.copyto(self.heads[slot], head)
        reqs = [self.comm.Isend(self.heads[slot], 0, header_tag(self.tag_ub))]
        if len(layers):
            n = len(self.offsets) - 1
            bufs = [self.layer(slot, i)[: sizes[i]] if sizes else self.layer(slot, i) for i in layers]
            reqs += [self.comm.Isend(buf, 0, update_tag(i, self.tag_ub)) for i, buf in zip(layers, bufs)]
            if extra is not None:
                self.messages[slot] = extra
                reqs.append(self.comm.Isend(extra, 0, update_tag(n, self.tag_ub)))
        self.requests[slot] = reqs

    def post_message(self, slot: int, head: np.ndarray, message: np.ndarray) -> None:
        """Send the header and one compressed upload (:mod:`bench.compress.uploads`) without waiting; the slot
        keeps the message alive until its send completes."""
        np.copyto(self.heads[slot], head)
        self.messages[slot] = message
        self.requests[slot] = [
            self.comm.Isend(self.heads[slot], 0, header_tag(self.tag_ub)),
            self.comm.Isend(message, 0, update_tag(0, self.tag_ub)),
        ]

    def drain(self) -> float:
        """Wait for every upload in flight (end of the round); returns the seconds waited."""
        t = time.perf_counter()
        for slot, reqs in enumerate(self.requests):
            MPI.Request.Waitall(reqs)
            self.requests[slot] = []
        return time.perf_counter() - t

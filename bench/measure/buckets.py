"""Timing of overlapped communication: buckets that run while the training thread computes.

Without overlap a step's communication starts after ``backward()`` and all of it is exposed: the training thread
waits for every byte. With overlap (``ring --overlap``, ``ddp``) a bucket's communication starts when its last
gradient is ready and runs beside the rest of the backward pass; only what is left when the training thread runs
out of work is exposed. Per bucket this module keeps four clock readings (the bucket's work starts, its
communication starts and ends, its work ends: packing lies between the first two and the last two) and turns them
into the per-layer series of the results file:

- ``timing/comm``: communication seconds (start to end, on whichever thread ran it), packing excluded;
- ``timing/exposed``: the part of that communication during which the training thread was waiting for it. The
  training thread stops computing at the end of the last layer's backward (``compute_end``) and then waits for the
  buckets in the order they complete; bucket g is waited for over [max(compute_end, end of the bucket completed
  before it), its end]. Its exposed communication is the length of that interval's intersection with its
  communication interval, so 0 <= exposed <= comm per bucket by construction; overlapped = comm - exposed.
  This is Holistic Trace Analysis's split (``get_comm_comp_overlap``): overlap % = overlapped / all communication.

A bucket's seconds and bytes are shared among its layers by bytes, as for non-overlapped buckets.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class BucketTiming:
    """One bucket's communication in one step (``time.perf_counter`` seconds)."""

    shares: dict[int, float]  # layer -> its fraction of the bucket's bytes (sums to 1)
    start: float  # the bucket's work began (packing, if any)
    comm_start: float
    comm_end: float
    end: float  # its result is in place (unpacked)
    sent: int  # bytes this rank sent for it

    @property
    def comm(self) -> float:
        return self.comm_end - self.comm_start

    @property
    def pack(self) -> float:
        return (self.comm_start - self.start) + (self.end - self.comm_end)


def exposed_comm(buckets: list[BucketTiming], compute_end: float) -> list[float]:
    """Seconds of each bucket's communication the training thread waited for (module docstring), in the order of
    ``buckets``. Their sum is at most max(0, last end - compute_end)."""
    exposed = [0.0] * len(buckets)
    waiting_from = compute_end
    for i in sorted(range(len(buckets)), key=lambda j: buckets[j].end):
        b = buckets[i]
        exposed[i] = max(0.0, b.comm_end - max(waiting_from, b.comm_start))
        waiting_from = max(waiting_from, b.end)
    return exposed


def serialised(buckets: list[BucketTiming]) -> list[BucketTiming]:
    """Buckets whose communication may be in flight together (DDP hands gloo several all-reduces at once, and each
    waits in gloo's queue from launch): each bucket's communication is counted from the later of its launch and the
    completion of the bucket completed before it, so the buckets' times add up to the wall time during which some
    bucket was in flight, not more. Buckets one thread runs one after another (``ring --overlap``) are unchanged."""
    out, previous_end = [], float("-inf")
    for b in sorted(buckets, key=lambda b: b.comm_end):
        start = min(b.comm_end, max(b.comm_start, previous_end))
        out.append(BucketTiming(b.shares, b.start + (start - b.comm_start), start, b.comm_end, b.end, b.sent))
        previous_end = b.comm_end
    return out


def record_buckets(rec, step: int, buckets: list[BucketTiming], compute_end: float, starts=None, t0=0.0, also=None):
    """Add the step's bucket timings into the Recorder's per-layer rows (``timing/comm``, ``timing/exposed``,
    ``timing/pack``, ``timing/comm_bytes``; ``starts``, if given, is the ``timeline/comm_start`` row; ``also``
    names a per-layer series that gets the communication time too, e.g. ``ps/push``)."""
    comm, exposed_row = rec["timing/comm"][step], rec["timing/exposed"][step]
    pack, sent = rec["timing/pack"][step], rec["timing/comm_bytes"][step]
    extra = rec[also][step] if also else None
    for b, exposed in zip(buckets, exposed_comm(buckets, compute_end)):
        local = b.sent == 0  # nothing left this rank (one rank): local work, not communication
        offset = 0.0
        for layer, share in b.shares.items():
            comm[layer] += 0.0 if local else b.comm * share
            if extra is not None:
                extra[layer] += 0.0 if local else b.comm * share
            exposed_row[layer] += 0.0 if local else exposed * share
            pack[layer] += (b.pack + (b.comm if local else 0.0)) * share
            sent[layer] += int(round(b.sent * share))
            if starts is not None:  # the bucket's layers as consecutive slices of its time, for the trace
                starts[layer] = b.comm_start - t0 + offset
                offset += b.comm * share


def byte_shares(layer_bytes: dict[int, int]) -> dict[int, float]:
    """Each layer's fraction of a bucket, from the bytes of it each layer holds."""
    total = sum(layer_bytes.values()) or 1
    return {layer: n / total for layer, n in layer_bytes.items()}

"""``python -m bench micro --op allreduce --compress METHOD``: a compressed all-reduce (sum) per size, timed from
the float32 buffer to the float32 sum, so compressing and decompressing are inside the time as they are in a step.

- ``ours``: what ``train --strategy ring --compress METHOD`` does per bucket (:mod:`bench.compress.exchange`):
  fp16/bf16 summed on the wire in their own type by our ring; sparse and quantised payloads (top-k, random-k,
  QSGD, sign) all-gathered by the point-to-point ring (:class:`kernels.ring_allgatherv.RingAllgatherv`), then
  decompressed and summed in ring order.
- ``mpi``: the same payloads through MPI's ``Allgatherv`` (lengths by ``Allgather``), decompressed and summed in
  rank order. MPI has no half-precision or sparse sum, so this is what an MPI program does with them.
- ``dense``: our float32 ring all-reduce of the same buffer, uncompressed: the time compression has to beat.

Bytes: ``sent`` is what our kernel sent from this rank (indices, lengths and values included; the slowest rank's
count, from the kernels' own accounting), ``dense`` what our float32 ring sends for the same buffer (also the
slowest rank's). MPI's
algorithm is its own, so its bytes are not counted. Error feedback is off here (each iteration starts from the
same buffer); ``train`` measures it. PowerSGD is refused: it needs a layer's matrix shape, not a flat buffer.

Check, on every size: ``ours`` and ``mpi`` equal the serial reference, the sum of every rank's decompressed
payload (payloads drawn with the same seed for both); ``dense`` equals MPI's ``Allreduce``. With the
integer-valued buffers used here, every sum is exact, so the check is equality.
"""

from __future__ import annotations

import functools

import numpy as np
from mpi4py import MPI

from bench.compress.exchange import reduce_in_wire_type, sum_decompressed
from bench.compress.methods import Compressor
from bench.compress.powersgd import PowerSGD
from bench.micro.checks import mismatches, strict_or
from bench.runtime.errors import UsageError
from kernels.ring_allgatherv import RingAllgatherv
from kernels.ring_allreduce import RingAllreduce
from kernels.topology import Topology

COMPRESSED_IMPLS = ("ours", "mpi", "dense")


def check_compressed(compressor: Compressor, impls) -> None:
    if isinstance(compressor, PowerSGD):
        raise UsageError("micro --compress powersgd: PowerSGD needs a layer's matrix shape; measure it with train")
    bad = [i for i in impls if i not in COMPRESSED_IMPLS]
    if bad:
        raise UsageError(f"micro --compress: --impl {', '.join(bad)} has no compressed form; use ours,mpi,dense")


class CompressedSum:
    """The two implementations of one compressed sum; ``sent`` holds the bytes our kernel sent last call."""

    def __init__(self, comm: MPI.Comm, compressor: Compressor, seed: int = 0):
        topo = Topology.ring(comm.rank, comm.size)
        self.comm, self.c, self.seed = comm, compressor, seed
        self.ring, self.gather = RingAllreduce(comm, topo), RingAllgatherv(comm, topo)
        self.sent = 0
        self.reseed()

    def reseed(self) -> None:
        """The random methods' draws restart, so both implementations compress the buffer alike."""
        self.draw = np.random.default_rng([self.seed, self.comm.rank]) if self.c.draws else None

    def ours(self, buf: np.ndarray) -> None:
        payload = self.c.compress(buf, self.draw)
        if self.c.summable:
            self.sent = reduce_in_wire_type(self.ring, self.c, payload, buf)
        else:
            payloads, self.sent = self.gather(payload)
            sum_decompressed(self.c, payloads, buf)

    def mpi(self, buf: np.ndarray) -> None:
        payload = self.c.compress(buf, self.draw)
        counts = np.empty(self.comm.size, np.int64)
        self.comm.Allgather(np.array([payload.size], np.int64), counts)
        displs = np.concatenate(([0], np.cumsum(counts)[:-1]))
        every = np.empty(int(counts.sum()), np.uint8)
        self.comm.Allgatherv([payload, MPI.BYTE], [every, counts, displs, MPI.BYTE])
        sum_decompressed(self.c, [every[d : d + n] for d, n in zip(displs, counts)], buf)

    def dense(self, buf: np.ndarray) -> None:
        self.ring(buf)


def bench_compressed_allreduce(comm, sizes, impls, timer, compressor: Compressor, checks=None) -> tuple[dict, dict]:
    """({impl: [samples per size]}, {"sent": [...], "dense": [...]} bytes per size for ``ours``)."""
    check_compressed(compressor, impls)
    checks = strict_or(checks, comm)
    kernel = CompressedSum(comm, compressor)
    out, sent = {impl: [] for impl in impls}, {"sent": [], "dense": []}
    for size in sizes:
        n = size // 4
        base = ((np.arange(n) % 7) + comm.rank + 1).astype(np.float32)  # integer-valued: fp16/bf16 sums exact
        buf = base.copy()
        ops = {impl: functools.partial(getattr(kernel, impl), buf) for impl in impls}

        def reset(_impl, buf=buf, base=base):
            buf[:] = base

        samples = timer(ops, size, reset)
        expect = {"ours": _reference(comm, kernel, base), "dense": np.empty_like(base)}
        comm.Allreduce(base, expect["dense"], op=MPI.SUM)
        for impl in impls:  # after the timed calls, untimed
            reset(impl)
            kernel.reseed()
            ops[impl]()
            wrong = mismatches(buf, expect.get(impl, expect["ours"]))
            checks.record(impl, wrong, f"{impl} compressed all-reduce of {size} bytes")
            out[impl].append(samples[impl])
        if "ours" in impls:
            sent["sent"].append(comm.allreduce(kernel.sent, op=MPI.MAX))
            sent["dense"].append(comm.allreduce(kernel.ring.elements_sent(n, 4) * 4, op=MPI.MAX))
    return out, sent


def _reference(comm, kernel: CompressedSum, base: np.ndarray) -> np.ndarray:
    """The serial sum of every rank's decompressed payload, in rank order (payloads gathered by pickling)."""
    kernel.reseed()
    payloads = comm.allgather(kernel.c.compress(base, kernel.draw))
    expect = np.empty_like(base)
    sum_decompressed(kernel.c, payloads, expect)
    return expect

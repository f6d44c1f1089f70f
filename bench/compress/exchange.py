"""The ring's gradient average with compression: one timed exchange per staged bucket, as
:func:`bench.strategies.averaging.average_exchanges` without it.

- summable types (fp16, bf16): scale by 1/p, compress (with error feedback if on), all-reduce the payload in its
  own type with our ring kernel (bf16 adds through float32), decompress: bytes sent are half the dense ring's;
- sparse and quantised types (top-k, random-k, QSGD, sign): compress, all-gather every rank's payload with the
  point-to-point ring (:class:`kernels.ring_allgatherv.RingAllgatherv`), decompress each and sum them in ring
  order (the same order on every rank, so replicas stay bit-identical), scale by 1/p;
- PowerSGD: its two all-reduces of P and Q by our ring (:class:`bench.compress.powersgd.PowerSGDAverage`).

Compressing and decompressing are timed by :data:`bench.measure.clocks.COMPRESSING` (a phase of their own: not
communication, not compute); packing by :data:`bench.measure.clocks.PACKING`.
"""

from __future__ import annotations

import time

import numpy as np

from bench.comm.exchange import Exchange
from bench.comm.staging import HostStaging
from bench.compress.feedback import ErrorFeedback
from bench.compress.methods import Compressor, payload_size
from bench.compress.powersgd import PowerSGD, PowerSGDAverage
from bench.measure.clocks import COMPRESSING
from bench.runtime.state import Stateful
from bench.workload.streams import Salt, stream
from kernels.ring_allgatherv import RingAllgatherv
from kernels.ring_allreduce import RingAllreduce


class CompressedAveraging(Stateful):
    """``ring``: the gradients of each bucket. ``localsgd`` (``anchored``): the parameters' change since the last
    average, x - x0, so that x <- x0 + mean(C(x_r - x0)) (without compression exactly mean(x_r)), and x0 <- x
    after the optional SlowMo update ``after(g)``."""

    state_attributes = ("anchor", "feedback", "power")  # what a checkpoint keeps (bench.runtime.state)

    def __init__(self, staging: HostStaging, allreduce: RingAllreduce, compressor: Compressor, feedback: bool, seed,
                 anchored: bool = False, after=None):  # fmt: skip
        self.staging, self.allreduce, self.compressor, self.seed = staging, allreduce, compressor, seed
        self.grads, self.after = not anchored, after
        self.anchor = [staging.pack(g, grads=False).copy() for g in range(len(staging.groups))] if anchored else None
        self.rec = None
        topo = allreduce.topology
        self.p, self.rank = topo.ring_size, topo.ring_index
        self.gather = RingAllgatherv(allreduce.comm, topo)
        self.feedback = ErrorFeedback(compressor, feedback)
        self.power = None
        if isinstance(compressor, PowerSGD):
            shapes = [[tuple(p.shape) for i in g for p in staging.layers[i].params] for g in staging.groups]
            self.power = [PowerSGDAverage(compressor.rank, s, seed, g, feedback) for g, s in enumerate(shapes)]
        self.step = 0

    def declare(self, rec) -> None:
        """The series this averaging records, each filled where the exchange runs (``compress/dense_bytes``: the
        float32 ring's bytes for the bucket, shared among its layers by bytes)."""
        layers = self.staging.layers
        L = (len(layers),)
        rec.add("timing/compress", "s", L)
        rec.add("compress/sent_bytes", "bytes", L, dtype=np.int64)
        rec.add("compress/dense_bytes", "bytes", L, dtype=np.int64)
        rec.add("compress/residual_norm", "1")
        self.rec, self._shares = rec, []
        for group in self.staging.groups:
            total = sum(layers[i].bytes for i in group) or 1
            self._shares.append(np.array([layers[i].bytes / total for i in group]))

    def _record(self, g: int, sent: int) -> None:
        if self.rec is not None:
            layers, share = list(self.staging.groups[g]), self._shares[g]
            self.rec["compress/sent_bytes"][self.step][layers] += np.round(sent * share).astype(np.int64)
            self.rec["compress/dense_bytes"][self.step][layers] += np.round(self.dense_bytes(g) * share).astype(
                np.int64
            )
            self.rec["compress/residual_norm"][self.step] = self.residual_norm()

    def exchanges(self) -> list[Exchange]:
        return [Exchange(group, lambda g=g: self.average(g)) for g, group in enumerate(self.staging.groups)]

    def dense_bytes(self, g: int) -> int:
        """What the uncompressed ring sends for bucket g (float32)."""
        n = self.staging.numpy[g].size
        return self.allreduce.elements_sent(n, 4) * 4

    def wire_plan(self) -> list[dict]:
        """Per bucket, what goes on the wire each step, for the cost model (``strategy_info.compress_wire``):
        ``{"allreduce_bytes": [...]}`` (buffers all-reduced by the ring) or ``{"allgather_bytes": n}`` (this
        rank's payload; every rank's is the same size for these methods)."""
        plan = []
        for g, buf in enumerate(self.staging.numpy):
            if self.power is not None:
                plan.append({"allreduce_bytes": [4 * self.power[g].p_len, 4 * self.power[g].q_len]})
            elif self.compressor.summable:
                plan.append({"allreduce_bytes": [2 * buf.size]})
            else:
                plan.append({"allgather_bytes": payload_size(self.compressor, buf.size)})
        return plan

    def residual_norm(self) -> float:
        if self.power is not None:
            return float(np.sqrt(sum(a.residual_norm_sq() for a in self.power)))
        return self.feedback.residual_norm()

    def average(self, g: int) -> int:
        """Bucket g replaced by the compressed average; returns the bytes this rank sent."""
        buf = self.staging.pack(g, grads=self.grads)
        if self.anchor is not None:
            COMPRESSING.timed(np.subtract)(buf, self.anchor[g], out=buf)
        if self.power is not None:
            sent = self._powersgd(g, buf)
        elif self.compressor.summable:
            sent = self._reduce_in_wire_type(g, buf)
        else:
            sent = self._gather_and_sum(g, buf)
        if self.anchor is not None:
            COMPRESSING.timed(np.add)(buf, self.anchor[g], out=buf)
        if self.after is not None:
            self.after(g)
        if self.anchor is not None:
            np.copyto(self.anchor[g], buf)
        self.staging.unpack(g, grads=self.grads)
        self._record(g, sent)
        return sent

    def _draw(self, g: int):
        return stream(self.seed, self.rank, self.step, g, salt=Salt.COMPRESS) if self.compressor.draws else None

    def _reduce_in_wire_type(self, g: int, buf: np.ndarray) -> int:
        payload = COMPRESSING.timed(self._compress)(g, buf * np.float32(1.0 / self.p))
        return reduce_in_wire_type(self.allreduce, self.compressor, payload, buf, key=g)

    def _gather_and_sum(self, g: int, buf: np.ndarray) -> int:
        payload = COMPRESSING.timed(self._compress)(g, buf)
        payloads, sent = self.gather(payload, key=g)
        COMPRESSING.timed(self._sum_decompressed)(payloads, buf)
        return sent

    def _compress(self, g: int, x: np.ndarray) -> np.ndarray:
        return self.feedback.compress(x, g, self._draw(g))

    def _sum_decompressed(self, payloads: list[np.ndarray], buf: np.ndarray) -> None:
        sum_decompressed(self.compressor, payloads, buf)
        buf *= np.float32(1.0 / self.p)

    def _powersgd(self, g: int, buf: np.ndarray) -> int:
        """PowerSGD's all-reduces are communication; the matrix products around them are compression."""
        in_allreduce = [0.0]

        def allreduce(x, key):
            t = time.perf_counter()
            self.allreduce(x, key=key)
            in_allreduce[0] += time.perf_counter() - t

        t = time.perf_counter()
        sizes = self.power[g](buf, allreduce, self.p)
        COMPRESSING.seconds += time.perf_counter() - t - in_allreduce[0]
        return sum(self.allreduce.elements_sent(n, 4) * 4 for n in sizes)


def reduce_in_wire_type(allreduce: RingAllreduce, compressor: Compressor, payload: np.ndarray, out: np.ndarray,
                        key: int = 0) -> int:  # fmt: skip
    """Sum every rank's ``payload`` of a summable method (fp16, bf16) in its own type with the ring, taking the
    dense buffer's algorithm, and decompress the sum into the float32 ``out``; returns the bytes this rank sent.
    Decompressing is timed by :data:`COMPRESSING`."""
    wire = payload.view(compressor.wire_dtype)
    allreduce(wire, key=key, add=compressor.add, path_bytes=out.nbytes)
    COMPRESSING.timed(np.copyto)(out, compressor.decompress(wire.view(np.uint8), out.size))
    return allreduce.elements_sent(wire.size, wire.itemsize, path_bytes=out.nbytes) * wire.itemsize


def sum_decompressed(compressor: Compressor, payloads: list[np.ndarray], out: np.ndarray) -> None:
    """``out`` = the sum of the decompressed ``payloads``, added in the order given (ring order on every rank, so
    replicas stay bit-identical)."""
    out[:] = 0.0
    for payload in payloads:
        out += compressor.decompress(payload, out.size)

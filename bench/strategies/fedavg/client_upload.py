"""A client host's uploads (a mixin of :class:`bench.strategies.fedavg.client.ClientHost`): each trained client's
model to the aggregator, blocking or from upload buffers, compressed or not, with what the algorithm sends beside
it (SCAFFOLD's variate change); with FedLAMA only the layers averaged this round (``self.averaged``). Packing,
compressing and sending are timed as their own phases, shared among layers by bytes where not tied to one.
"""

from __future__ import annotations

import time

import numpy as np

from bench.compress.uploads import DeltaEncoder
from bench.strategies.fedavg.protocol import Head, header_tag, update_tag


class Uploading:
    def send(self, head: np.ndarray, rec, round_: int, with_model: bool) -> None:
        """A client's report: blocking (``--upload-buffers 0``) or posted from an upload buffer."""
        self._count_bytes(rec, round_, head.nbytes)
        if self.uploads is None:
            self.comm.Send(head, 0, header_tag(self.tag_ub))
            if with_model:
                self.upload(rec, round_, int(head[Head.CLIENT]))
            return
        slot, waited = self.uploads.acquire()
        if with_model and self.encoder is not None:
            message = self.compressed(int(head[Head.CLIENT]), rec, round_)
            t = time.perf_counter()
            self.uploads.post_message(slot, head, message)
            self._share(rec, round_, waited + time.perf_counter() - t)
            return
        t = time.perf_counter()
        layers = np.flatnonzero(self.uploading) if with_model else []
        sizes = [b.size for b in self.staging.numpy]  # a width-reduced sub-model's are smaller than the buffer's
        for i in layers:
            np.copyto(self.uploads.layer(slot, i)[: sizes[i]], self.staging.pack(i, grads=False))
            rec["timing/comm_bytes"][round_][i] += self.staging.numpy[i].nbytes
        packed = time.perf_counter()
        extra = self.extra if with_model else None
        self.uploads.post(slot, head, layers, extra, sizes)
        if extra is not None:
            rec["timing/comm_bytes"][round_] += [b.nbytes for b in self.staging.numpy]
        self._share(rec, round_, waited + time.perf_counter() - packed)
        rec["timing/pack"][round_] += (packed - t) * self._byte_share

    def _count_bytes(self, rec, round_: int, nbytes: int) -> None:
        """Bytes sent that belong to no one layer (headers, records, a report's sum), shared by layer size with
        the rounding remainder on the largest layer, so the row's total is exact."""
        shares = np.floor(nbytes * self._byte_share).astype(np.int64)
        shares[int(np.argmax(self._byte_share))] += nbytes - shares.sum()
        rec["timing/comm_bytes"][round_] += shares

    def _share(self, rec, round_: int, seconds: float) -> None:
        """Upload time not tied to one layer (waiting for a free buffer, posting, draining), shared by bytes."""
        rec["fedavg/upload"][round_] += seconds * self._byte_share
        rec["timing/comm"][round_] += seconds * self._byte_share

    def compressed(self, k: int, rec, round_: int) -> np.ndarray:
        """Client k's upload as one compressed message (:mod:`bench.compress.uploads`): packing, then compressing,
        each timed as its own phase and shared among layers by bytes; bytes per layer as sent."""
        t = time.perf_counter()
        model = [self.staging.pack(i, grads=False) for i in range(len(self.layers))]
        packed = time.perf_counter()
        message = self.encoder.encode(k, round_, model, self.global_values)
        rec["timing/pack"][round_] += (packed - t) * self._byte_share
        rec["timing/compress"][round_] += (time.perf_counter() - packed) * self._byte_share
        sent = DeltaEncoder.layer_bytes(message, len(self.layers))
        rec["timing/comm_bytes"][round_] += sent
        rec["compress/sent_bytes"][round_] += sent
        rec["compress/dense_bytes"][round_] += [b.nbytes for b in self.staging.numpy]
        rec["compress/residual_norm"][round_] = self.encoder.feedback.residual_norm()  # all this host's clients
        return message

    def upload(self, rec, round_: int, k: int) -> None:
        """Send the trained model layer by layer; copying it into the host buffer is packing, not communication."""
        if self.encoder is not None:
            message = self.compressed(k, rec, round_)
            t = time.perf_counter()
            self.comm.Send(message, 0, update_tag(0, self.tag_ub))
            self._share(rec, round_, time.perf_counter() - t)
            return
        for i in np.flatnonzero(self.uploading):
            t = time.perf_counter()
            buf = self.staging.pack(i, grads=False)
            packed = time.perf_counter()
            self.comm.Send(buf, 0, update_tag(i, self.tag_ub))
            dt = time.perf_counter() - packed
            rec["timing/pack"][round_][i] += packed - t
            rec["fedavg/upload"][round_][i] += dt
            rec["timing/comm"][round_][i] += dt
            rec["timing/comm_bytes"][round_][i] += buf.nbytes
        if self.extra is not None:  # SCAFFOLD's dc_i, after the model
            t = time.perf_counter()
            self.comm.Send(self.extra, 0, update_tag(len(self.layers), self.tag_ub))
            self._share(rec, round_, time.perf_counter() - t)
            rec["timing/comm_bytes"][round_] += [b.nbytes for b in self.staging.numpy]

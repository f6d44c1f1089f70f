"""``--compress-on device``: the ring's compressed gradient average with compression on the model's device, so
that on a GPU only the payload crosses to the host (fp16 and bf16: half the bytes; top-k at R: 8 R n bytes
instead of 4 n), and the error-feedback memories stay on the device.

The same exchange as :class:`bench.compress.exchange.CompressedAveraging` (whose series, byte counts and wire
plan it keeps), in the same order: gather the bucket on the device; summable types scale by 1/p, compress, cross,
are summed on the wire in their own type by our ring, cross back and are decompressed; the others compress,
cross, are all-gathered, cross back and are decompressed and summed in ring order, then scaled. Each method's
tensor form (``compress_tensor``, ``decompress_tensor`` beside its host form) writes the same wire format, so the
host's ring and all-gather are unchanged; on CPU tensors every method but QSGD (whose device draws are another
sample) gives the host path's parameters bit for bit, which is how it is tested.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.compress.exchange import CompressedAveraging
from bench.compress.feedback import ErrorFeedback
from bench.measure.clocks import COMPRESSING, PACKING


class DeviceErrorFeedback(ErrorFeedback):
    """Error feedback (:mod:`bench.compress.feedback`) with the memories as tensors on the device."""

    def compress(self, x: torch.Tensor, key, draw=None) -> torch.Tensor:
        if not self.enabled:
            return self.compressor.compress_tensor(x, draw)
        memory = self.memory.get(key)
        if isinstance(memory, np.ndarray):  # restored from a checkpoint: back to the device
            memory = torch.from_numpy(memory).to(x.device)
        corrected = x + memory if memory is not None else x.clone()
        payload = self.compressor.compress_tensor(corrected, draw)
        corrected.sub_(self.compressor.decompress_tensor(payload, x.numel()))
        self.memory[key] = corrected
        return payload

    def residual_norm(self) -> float:
        return float(np.sqrt(sum(_squared_norm(m) for m in self.memory.values())))


class DeviceCompressedAveraging(CompressedAveraging):
    """``ring --compress METHOD --compress-on device`` (PowerSGD and localsgd's anchored change stay on the host)."""

    def __init__(self, staging, allreduce, compressor, feedback: bool, seed, device: torch.device):
        super().__init__(staging, allreduce, compressor, feedback, seed)
        self.device = device
        self.feedback = DeviceErrorFeedback(compressor, feedback)
        sizes = [t.numel() for t in staging.host]
        self.buffers = list(torch.split(torch.empty(sum(sizes), device=device), sizes))
        self.scale = float(np.float32(1.0 / self.p))  # the host path's float32 factor, exactly

    def average(self, g: int) -> int:
        bucket = self.buffers[g]
        PACKING.timed(torch.cat)(self.staging.tensors(g, True), out=bucket)
        sent = self._summed_on_the_wire(g, bucket) if self.compressor.summable else self._gathered(g, bucket)
        PACKING.timed(self.staging.scatter)(g, bucket, True)
        self._record(g, sent)
        return sent

    def _summed_on_the_wire(self, g: int, bucket: torch.Tensor) -> int:
        payload = COMPRESSING.timed(_finished(self.feedback.compress))(bucket * self.scale, g, self._draw(g))
        host = PACKING.timed(_to_host)(payload)
        wire = host.view(self.compressor.wire_dtype)
        self.allreduce(wire, key=g, add=self.compressor.add, path_bytes=bucket.numel() * 4)
        summed = PACKING.timed(_to_device)(host, self.device)
        bucket.copy_(COMPRESSING.timed(_finished(self.compressor.decompress_tensor))(summed, bucket.numel()))
        return self.allreduce.elements_sent(wire.size, wire.itemsize, path_bytes=bucket.numel() * 4) * wire.itemsize

    def _gathered(self, g: int, bucket: torch.Tensor) -> int:
        payload = COMPRESSING.timed(_finished(self.feedback.compress))(bucket, g, self._draw(g))
        payloads, sent = self.gather(PACKING.timed(_to_host)(payload), key=g)
        total = torch.zeros_like(bucket)
        for each in payloads:  # ring order on every rank, as the host path adds them
            piece = _to_device(each, self.device)
            total += COMPRESSING.timed(_finished(self.compressor.decompress_tensor))(piece, total.numel())
        bucket.copy_(total.mul_(self.scale))
        return sent


def _squared_norm(memory) -> float:
    """A memory on the device, or one restored from a checkpoint and not used since (numpy)."""
    if isinstance(memory, np.ndarray):
        return float(np.dot(memory, memory))
    return float(torch.dot(memory.reshape(-1), memory.reshape(-1)))


def _finished(fn):
    """``fn`` whose GPU work is done when it returns, so that the clock timing it measures the work and not its
    launch (compression's time is its own phase; the copy right after would otherwise absorb it)."""

    def run(*args):
        out = fn(*args)
        if out.is_cuda:
            torch.cuda.current_stream(out.device).synchronize()
        return out

    return run


def _to_host(payload: torch.Tensor) -> np.ndarray:
    return payload.cpu().numpy()


def _to_device(payload: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(payload).to(device)

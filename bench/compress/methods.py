"""Gradient compressors on flat float32 host buffers: what each sends and how it is read back.

The interface is the shape GRACE (Xu et al. 2021) and PyTorch's DDP communication hooks share: ``compress(x, draw)``
returns the payload as one contiguous uint8 array (its wire format is the method's docstring; every part is a plain
numpy array, no pickling), ``decompress(payload, n)`` returns the float32 vector it stands for. ``draw`` is the
numpy generator of the call (:data:`bench.workload.streams.Salt.COMPRESS`: seed, rank or client, step, bucket) for
the methods that draw. ``summable`` methods (fp16, bf16) are reduced on the wire in their own type by the ring
kernel; the others are all-gathered and summed after decompression. ``biased`` methods get error feedback by
default (:mod:`bench.compress.feedback`).
"""

from __future__ import annotations

import math

import numpy as np
import torch


class Compressor:
    name = "none"
    summable = False  # the wire type adds: the ring reduces payloads in place (wire_dtype)
    biased = False  # E[decompress(compress(x))] != x: error feedback on by default
    needs_allreduce = False  # exchanged through all-reduces of factors (PowerSGD), not all-gathers of pieces
    draws = False  # compress() needs the call's random generator

    def compress(self, x: np.ndarray, draw: np.random.Generator | None = None) -> np.ndarray:
        raise NotImplementedError

    def decompress(self, payload: np.ndarray, n: int) -> np.ndarray:
        raise NotImplementedError

    # On the model's device (``--compress-on device``): the same wire format from a float32 tensor, so that only
    # the payload crosses to the host. A method without its own falls back to the host's (a copy each way).
    def compress_tensor(self, x: torch.Tensor, draw: np.random.Generator | None = None) -> torch.Tensor:
        return torch.from_numpy(self.compress(x.cpu().numpy(), draw)).to(x.device)

    def decompress_tensor(self, payload: torch.Tensor, n: int) -> torch.Tensor:
        return torch.from_numpy(self.decompress(payload.cpu().numpy(), n)).to(payload.device)

    on_device = False  # compress_tensor runs on the tensor's device (not through the host fallback)

    def spec(self) -> str:
        return self.name


def _torch(a: np.ndarray, dtype=None) -> torch.Tensor:
    """A numpy array as a tensor on the same memory (``dtype``: reinterpret the bits), for torch's vectorised half
    conversions and additions: about 10x numpy's (``python -m timeit`` here: fp16 add of 100k entries 66 us
    against 734 us)."""
    t = torch.from_numpy(a)
    return t.view(dtype) if dtype is not None else t


class Float16(Compressor):
    """IEEE half precision: 2 bytes per entry, relative rounding error <= 2**-11 in the normal range (|x| in
    [6.1e-5, 65504]); larger magnitudes overflow to inf, so the ring averages pre-divided values, as DDP's
    ``fp16_compress_hook`` does."""

    name, summable, wire_dtype = "fp16", True, np.float16

    def compress(self, x, draw=None):
        x = np.ascontiguousarray(x, np.float32)  # pragma: no mutate (callers pass float32; this makes it contiguous)
        return _torch(x).to(torch.float16).numpy().view(np.uint8)

    def decompress(self, payload, n):
        return _torch(payload.view(np.float16)).float().numpy()

    on_device = True

    def compress_tensor(self, x, draw=None):
        return x.to(torch.float16).view(torch.uint8)

    def decompress_tensor(self, payload, n):
        return payload.view(torch.float16).float()

    @staticmethod
    def add(target: np.ndarray, incoming: np.ndarray, out: np.ndarray) -> None:
        torch.add(_torch(target), _torch(incoming), out=_torch(out))


class BFloat16(Compressor):
    """bfloat16 (the upper 16 bits of a float32, rounded to nearest even): 2 bytes per entry, float32's range,
    relative rounding error <= 2**-8. numpy has no bfloat16, so the wire type is uint16 bit patterns read as
    torch's bfloat16; the ring adds them as torch does (in float32, the sum rounded back), as a bf16 all-reduce on
    an accelerator does."""

    name, summable, wire_dtype = "bf16", True, np.uint16

    @staticmethod
    def to_bits(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)  # pragma: no mutate (callers pass float32; this makes it contiguous)
        half = _torch(x).to(torch.bfloat16)
        return half.view(torch.int16).numpy().view(np.uint16)

    @staticmethod
    def from_bits(b: np.ndarray) -> np.ndarray:
        return _torch(np.ascontiguousarray(b).view(np.int16), torch.bfloat16).float().numpy()

    def compress(self, x, draw=None):
        return self.to_bits(x).view(np.uint8)

    def decompress(self, payload, n):
        return self.from_bits(payload.view(np.uint16))  # pragma: no mutate (from_bits views the bytes as int16 itself)

    on_device = True

    def compress_tensor(self, x, draw=None):
        return x.to(torch.bfloat16).view(torch.uint8)

    def decompress_tensor(self, payload, n):
        return payload.view(torch.bfloat16).float()

    @staticmethod
    def add(target: np.ndarray, incoming: np.ndarray, out: np.ndarray) -> None:
        # int16, not the arrays' uint16: torch < 2.3 has no uint16 to reinterpret (with it, view(None) is the same)
        target, incoming, out = (a.view(np.int16) for a in (target, incoming, out))  # pragma: no mutate (above)
        torch.add(_torch(target, torch.bfloat16), _torch(incoming, torch.bfloat16), out=_torch(out, torch.bfloat16))


def payload_size(compressor: Compressor, n: int) -> int:
    """Bytes of a payload for n entries: the same for any input of that length, for every method here (what lets
    the parameter servers pre-post their receives and the cost model size the all-gather)."""
    zeros, draw = np.zeros(n, np.float32), np.random.default_rng(0)  # pragma: no mutate (size depends on n alone)
    return int(compressor.compress(zeros, draw).size)


def kept(ratio: float, n: int) -> int:
    """Entries a sparsifier keeps of ``n``: ceil(ratio * n), at least 1 of a non-empty vector (0 of an empty one)."""
    return min(n, max(1, math.ceil(ratio * n)))


def sparse_payload(index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Wire format of top-k and random-k: k int32 indices (ascending), then k float32 values."""
    return np.concatenate([index.astype(np.int32).view(np.uint8), values.astype(np.float32).view(np.uint8)])


def sparse_payload_tensor(index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """:func:`sparse_payload` on a device: the same bytes."""
    return torch.cat([index.to(torch.int32).view(torch.uint8), values.to(torch.float32).view(torch.uint8)])


def sparse_vector_tensor(payload: torch.Tensor, n: int) -> torch.Tensor:
    k = payload.numel() // 8
    out = torch.zeros(n, dtype=torch.float32, device=payload.device)
    out[payload[: 4 * k].view(torch.int32).long()] = payload[4 * k :].view(torch.float32)
    return out


def sparse_vector(payload: np.ndarray, n: int) -> np.ndarray:
    k = payload.size // 8
    out = np.zeros(n, dtype=np.float32)
    out[payload[: 4 * k].view(np.int32)] = payload[4 * k :].view(np.float32)
    return out


class TopK(Compressor):
    """The k = ceil(R n) entries of largest magnitude (Aji & Heafield 2017; Stich et al. 2018 with memory): 8 k
    bytes (int32 index + float32 value per entry)."""

    name, biased = "topk", True

    def __init__(self, ratio: float):
        self.ratio = ratio

    def spec(self):
        return f"topk:{self.ratio:g}"

    def compress(self, x, draw=None):
        k = kept(self.ratio, x.size)
        # torch.topk, not np.argpartition: numpy's selection slows down 30x on tied magnitudes (a client's delta
        # is exactly zero wherever its data never reached: 18.9 against 0.66 ms on 131k entries here)
        top = torch.topk(_torch(np.abs(x)), k, sorted=False)  # pragma: no mutate (sorted: np.sort follows anyway)
        index = np.sort(top.indices.numpy())
        return sparse_payload(index, x[index])

    def decompress(self, payload, n):
        return sparse_vector(payload, n)

    on_device = True

    def compress_tensor(self, x, draw=None):
        k = kept(self.ratio, x.numel())
        index = torch.topk(x.abs(), k, sorted=False).indices.sort().values
        return sparse_payload_tensor(index, x[index])

    def decompress_tensor(self, payload, n):
        return sparse_vector_tensor(payload, n)


class RandomK(TopK):
    """k = ceil(R n) entries drawn uniformly without replacement, sent unscaled (so biased; with error feedback,
    as GRACE's randomk): 8 k bytes."""

    name, draws = "randk", True

    def spec(self):
        return f"randk:{self.ratio:g}"

    def compress(self, x, draw=None):
        k = kept(self.ratio, x.size)
        index = np.sort(draw.choice(x.size, size=k, replace=False))  # pragma: no mutate (replace=None is False)
        return sparse_payload(index, x[index])

    def compress_tensor(self, x, draw=None):
        """The host's draw (the same stream, so the same entries); only the k indices cross to the device."""
        k = kept(self.ratio, x.numel())
        index = torch.from_numpy(np.sort(draw.choice(x.numel(), size=k, replace=False))).to(x.device)
        return sparse_payload_tensor(index, x[index])

"""Quantising compressors: QSGD (stochastic rounding to S levels per bucket) and scaled sign.

Both are :class:`bench.compress.methods.Compressor` s on flat float32 buffers; their wire formats are in the class
docstrings.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.compress.methods import Compressor

_TORCH_LEVELS = {np.int8: torch.int8, np.int16: torch.int16}
_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)  # numpy packbits' big-endian order

QSGD_BUCKET = 512  # entries per norm (Alistarh et al. 2017 quantise buckets of d entries with their own norm)


class QSGD(Compressor):
    """QSGD (Alistarh et al. 2017, Sec. 3.1): per bucket of d = 512 entries with norm ||v||_2, entry i is sent as
    ||v|| sgn(v_i) xi_i / s, where l = floor(s |v_i| / ||v||) and xi_i = l + 1 with probability
    s |v_i| / ||v|| - l, else l. Unbiased, with E||Q(v) - v||^2 <= min(d / s^2, sqrt(d) / s) ||v||^2 (their
    Lemma 3.1). Wire: one float32 norm per bucket, then one signed level per entry (int8 for s <= 127, else
    int16)."""

    name, draws = "qsgd", True

    def __init__(self, levels: int):
        self.levels = levels
        self.level_dtype = np.int8 if levels <= np.iinfo(np.int8).max else np.int16

    def spec(self):
        return f"qsgd:{self.levels}"

    def _norms(self, n: int) -> int:
        return -(-n // QSGD_BUCKET)

    def compress(self, x, draw=None):
        n, s = x.size, self.levels
        buckets = self._norms(n)
        padded = np.zeros(buckets * QSGD_BUCKET, dtype=np.float32)  # pragma: no mutate (float64: a finer norm only)
        padded[:n] = x
        rows = padded.reshape(buckets, QSGD_BUCKET)
        norms = np.linalg.norm(rows, axis=1).astype(np.float32)
        safe = np.where(norms > 0, norms, np.inf)[:, None]  # an all-zero bucket sends level 0
        # level <= s: fl(sum of squares) >= fl(v_i^2) and sqrt(fl(v_i^2)) = |v_i| under round-to-nearest, so the
        # float32 ratio |v_i| / ||v|| never exceeds 1; s <= 127 fits int8 (unit test at s = 127 and 128)
        scaled = np.abs(rows) / safe * s
        lower = np.floor(scaled)
        level = lower + (draw.random(scaled.shape) < scaled - lower)
        signed = (np.sign(rows) * level).astype(self.level_dtype).ravel()[:n]
        return np.concatenate([norms.view(np.uint8), signed.view(np.uint8)])

    def decompress(self, payload, n):
        buckets = self._norms(n)
        norms = payload[: 4 * buckets].view(np.float32)
        levels = payload[4 * buckets :].view(self.level_dtype).astype(np.float32)
        return levels * np.repeat(norms / self.levels, QSGD_BUCKET)[:n]

    on_device = True

    def compress_tensor(self, x, draw=None):
        """The same rule and wire format on the device; its uniform draws come from a torch generator on the
        device seeded from the call's stream (drawing them on the host would move 8 bytes per entry across):
        another sample of the same distribution than the host's, so host and device runs are not bit-identical."""
        n, s = x.numel(), self.levels
        buckets = self._norms(n)
        padded = torch.zeros(buckets * QSGD_BUCKET, dtype=torch.float32, device=x.device)
        padded[:n] = x
        rows = padded.view(buckets, QSGD_BUCKET)
        norms = torch.linalg.vector_norm(rows, dim=1)
        safe = torch.where(norms > 0, norms, torch.full_like(norms, float("inf")))[:, None]
        scaled = rows.abs() / safe * s
        lower = scaled.floor()
        generator = torch.Generator(x.device).manual_seed(int(draw.integers(2**63)))
        level = lower + (torch.rand(scaled.shape, generator=generator, device=x.device) < scaled - lower)
        signed = (rows.sign() * level).to(_TORCH_LEVELS[self.level_dtype]).view(-1)[:n]
        return torch.cat([norms.view(torch.uint8), signed.view(torch.uint8)])

    def decompress_tensor(self, payload, n):
        buckets = self._norms(n)
        norms = payload[: 4 * buckets].view(torch.float32)
        levels = payload[4 * buckets :].view(_TORCH_LEVELS[self.level_dtype]).float()
        return levels * torch.repeat_interleave(norms / self.levels, QSGD_BUCKET)[:n]


class ScaledSign(Compressor):
    """Scaled sign (EF-signSGD, Karimireddy et al. 2019, Algorithm 1): C(p) = (||p||_1 / d) sign(p), with sign(0)
    taken as +. Biased: error feedback on by default. Wire: one float32 scale, then one bit per entry (numpy
    ``packbits``, 1 = non-negative): 4 + ceil(n / 8) bytes."""

    name, biased = "sign", True

    def compress(self, x, draw=None):
        total = np.abs(x).sum(dtype=np.float64)  # pragma: no mutate (a float32 sum differs below float32's rounding)
        scale = np.float32(total / x.size) if x.size else np.float32(0)
        return np.concatenate([np.atleast_1d(scale).view(np.uint8), np.packbits(x >= 0)])

    def decompress(self, payload, n):
        scale = payload[:4].view(np.float32)[0]
        return np.where(np.unpackbits(payload[4:], count=n), scale, -scale)  # float32: scale is

    on_device = True

    def compress_tensor(self, x, draw=None):
        """numpy's ``packbits`` on the device: eight signs to a byte, the first the most significant bit."""
        n = x.numel()
        total = x.abs().sum(dtype=torch.float64)
        scale = (total / n).to(torch.float32) if n else torch.zeros((), dtype=torch.float32, device=x.device)
        bits = torch.zeros(-(-n // 8) * 8, dtype=torch.uint8, device=x.device)
        bits[:n] = x >= 0
        packed = (bits.view(-1, 8) * _BIT_WEIGHTS.to(x.device)).sum(dim=1, dtype=torch.uint8)
        return torch.cat([scale.reshape(1).view(torch.uint8), packed])

    def decompress_tensor(self, payload, n):
        scale = payload[:4].view(torch.float32)
        bits = (payload[4:, None] & _BIT_WEIGHTS.to(payload.device)).ne(0).view(-1)[:n]
        return torch.where(bits, scale, -scale)

"""The compressors' wire formats read by hand (bench/compress's docstrings), for the tests: never calls a
compressor's ``decompress``, so a bug in it cannot cancel out of a comparison."""

from __future__ import annotations

import numpy as np


def decode_by_hand(spec: str, payload: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, bool]:
    """(the values a payload stands for, whether it is a valid compression of x), from the wire formats of
    bench/compress's docstrings: top-k/random-k k int32 indices then k float32 values (top-k: the k largest
    magnitudes); QSGD one float32 norm per 512 entries then int8 levels l with |l| in {floor, floor + 1} of
    s |x_i| / ||bucket|| (Alistarh et al. 2017); sign one float32 scale = mean |x| then 1 bit per entry (x >= 0)."""
    name, _, arg = spec.partition(":")
    n = x.size
    if name == "fp16":  # IEEE half: numpy's own float16 (round to nearest even)
        return payload.view(np.float16).astype(np.float32), bool(
            np.array_equal(payload.view(np.float16), x.astype(np.float16))
        )
    if name == "bf16":  # the upper 16 bits of float32, rounded to nearest even
        bits = payload.view(np.uint16)
        return (bits.astype(np.uint32) << 16).view(np.float32), bool(np.array_equal(bits, bf16_bits(x)))
    if name in ("topk", "randk"):
        k = payload.size // 8
        index, values = payload[: 4 * k].view(np.int32), payload[4 * k :].view(np.float32)
        out = np.zeros(n, np.float32)
        out[index] = values
        ok = k == min(n, max(1, int(np.ceil(float(arg) * n)))) and np.array_equal(values, x[index])
        if name == "topk":
            ok &= k == 0 or np.abs(x[index]).min() >= np.sort(np.abs(x))[n - k]
        return out, bool(ok)
    if name == "qsgd":
        s, buckets = int(arg), -(-n // 512)
        norms = payload[: 4 * buckets].view(np.float32)
        levels = payload[4 * buckets :].view(np.int8 if s <= 127 else np.int16)
        per_entry = np.repeat(norms, 512)[:n]
        exact = s * np.abs(x) / np.where(per_entry > 0, per_entry, 1)
        ok = np.allclose(norms, [np.linalg.norm(x[b * 512 : (b + 1) * 512]) for b in range(buckets)], rtol=1e-6)
        ok &= bool(np.all((np.abs(levels) >= np.floor(exact) - 1e-6) & (np.abs(levels) <= np.floor(exact) + 1)))
        ok &= bool(np.all((levels == 0) | (np.sign(levels) == np.sign(x))))
        return (levels.astype(np.float32) * (per_entry / s)).astype(np.float32), bool(ok)
    scale = payload[:4].view(np.float32)[0]
    positive = np.unpackbits(payload[4:], count=n).astype(bool)
    mean = np.abs(x).sum(dtype=np.float64) / n if n else 0.0
    ok = np.isclose(scale, mean, rtol=1e-6, atol=0) and np.array_equal(positive, x >= 0)
    return np.where(positive, scale, -scale).astype(np.float32), bool(ok)


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """bfloat16 by hand: the upper 16 bits of the float32 pattern after adding 0x7FFF plus the lowest kept bit
    (round to nearest, ties to even; Wang & Kanwar 2019; finite inputs only)."""
    bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def payload_bytes(spec: str, n: int) -> int:
    """A payload's size for n entries, from the wire formats: 2 n (fp16, bf16); 8 k with k = ceil(R n), at least 1
    of a non-empty vector (top-k, random-k); 4 per 512 entries + 1 (s <= 127) or 2 bytes per entry (QSGD);
    4 + ceil(n / 8) (sign)."""
    name, _, arg = spec.partition(":")
    if name in ("fp16", "bf16"):
        return 2 * n
    if name in ("topk", "randk"):
        return 8 * (min(n, max(1, int(np.ceil(float(arg) * n)))) if n else 0)
    if name == "qsgd":
        return 4 * (-(-n // 512)) + n * (1 if int(arg) <= 127 else 2)
    return 4 + -(-n // 8)

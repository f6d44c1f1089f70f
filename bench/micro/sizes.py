"""Message sizes as the microbenchmark conventions users know write them.

- A size is a number of bytes with an optional unit: ``8``, ``64K``, ``1M``, ``2G``; ``K``, ``KB`` and ``KiB`` all
  mean 1024 bytes (and so on), as in nccl-tests (``-b 8 -e 128M``) and the OSU benchmarks (``-m 1:4M``). No
  decimal (1000-based) units: a benchmark's sizes are powers of two.
- A range is ``MIN:MAX`` (OSU's ``-m``; ``:MAX`` from the smallest, ``MIN:`` to the default largest).
- Sizes from MIN to MAX grow by a factor (nccl-tests' ``-f``, default 2), starting at MIN rounded up to a whole
  float32; MAX itself is always measured, as the last size, when the factor steps over it (``-b 8 -e 4M -f 4``
  ends 2M, 4M: a user who asks for 4M gets 4M).
"""

from __future__ import annotations

import re

UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes in ``text``; ValueError with the accepted forms otherwise."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"size {text!r}: expected bytes with an optional K, M or G (1024-based), e.g. 8, 64K, 1M")
    return int(match.group(1)) * UNITS[match.group(2).upper()]


def parse_range(text: str, default_min: int, default_max: int) -> tuple[int, int]:
    """``MIN:MAX`` (either side may be empty) as bytes."""
    lo, sep, hi = str(text).partition(":")
    if not sep:
        raise ValueError(f"range {text!r}: expected MIN:MAX, e.g. 8:1M")
    return (parse_size(lo) if lo.strip() else default_min), (parse_size(hi) if hi.strip() else default_max)


def sizes_between(lo: int, hi: int, factor: int = 2) -> list[int]:
    """Sizes from ``lo`` (rounded up to a multiple of 4 bytes, at least 4) to ``hi`` bytes inclusive, each
    ``factor`` times the one before, and ``hi`` (rounded down to whole float32s) last if the steps pass over it."""
    if factor < 2:
        raise ValueError(f"step factor {factor}: must be 2 or more")
    out, s = [], max(4, -(-lo // 4) * 4)
    while s <= hi:
        out.append(s)
        s *= factor
    last = hi // 4 * 4
    if out and out[-1] < last:
        out.append(last)
    return out

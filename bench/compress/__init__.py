"""Compressed communication: ``--compress METHOD`` and ``--error-feedback``.

Methods (``parse``): ``none``, ``fp16``, ``bf16``, ``topk:R``, ``randk:R`` (R: fraction of entries kept, in
(0, 1]), ``qsgd:S`` (S levels, 1..32767), ``sign``, ``powersgd:RANK``. The maths of each is beside it
(:mod:`bench.compress.methods`, :mod:`bench.compress.quantize`, :mod:`bench.compress.powersgd`); error feedback in
:mod:`bench.compress.feedback`; the ring's compressed average in :mod:`bench.compress.exchange`.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.compress.methods import BFloat16, Compressor, Float16, RandomK, TopK
from bench.compress.quantize import QSGD, ScaledSign

METHODS = ("none", "fp16", "bf16", "topk:R", "randk:R", "qsgd:S", "sign", "powersgd:RANK")


def parse(spec: str) -> Compressor | None:
    """The compressor ``spec`` names (None for ``none``); ValueError with the accepted forms otherwise."""
    name, _, arg = spec.partition(":")
    simple = {"none": None, "fp16": Float16, "bf16": BFloat16, "sign": ScaledSign}
    if name in simple and not arg:
        return simple[name]() if simple[name] else None
    try:
        if name in ("topk", "randk"):
            ratio = float(arg)
            if 0 < ratio <= 1:
                return (TopK if name == "topk" else RandomK)(ratio)
        elif name in ("qsgd", "powersgd"):
            value = int(arg)
            if name == "qsgd" and 1 <= value <= 32767:
                return QSGD(value)
            if name == "powersgd" and value >= 1:
                from bench.compress.powersgd import PowerSGD

                return PowerSGD(value)
    except ValueError:
        pass
    raise ValueError(
        f"--compress {spec!r}: expected one of {', '.join(METHODS)} (R in (0, 1], S in 1..32767, RANK >= 1)"
    )


def error_feedback_on(compressor: Compressor | None, setting: str) -> bool:
    """``--error-feedback auto`` turns it on for the biased methods (top-k, random-k, sign, PowerSGD)."""
    if compressor is None:
        return False
    return compressor.biased if setting == "auto" else setting == "on"


@dataclass(frozen=True)
class Compression:
    """``--compress`` and ``--error-feedback`` as typed values (``Config.compression``): strategies ask this, never
    the option strings. ``method`` is a fresh compressor (PowerSGD keeps per-bucket state: one per consumer)."""

    method: Compressor | None
    error_feedback: bool

    @classmethod
    def of(cls, spec: str, feedback: str) -> Compression:
        method = parse(spec)
        return cls(method, error_feedback_on(method, feedback))

    @property
    def on(self) -> bool:
        return self.method is not None

    @property
    def needs_allreduce(self) -> bool:
        """Its exchange all-reduces low-rank factors (PowerSGD): only ring and localsgd have one."""
        return self.method is not None and self.method.needs_allreduce

"""Where ``--compress`` computes (``--compress-on``), decided without torch or MPI (the config's checks use it)."""

from __future__ import annotations


def compress_on_device_blocker(cfg, compression) -> str:
    """Why this run cannot compress on the model's device ('' if it can)."""
    if compression.needs_allreduce:
        return f"{compression.method.spec()} computes its factors on the host (use --compress-on host)"
    if not compression.method.on_device:
        return f"{compression.method.spec()} has no device form"
    return ""


def compress_place(cfg, compression, device_type: str) -> str:
    """``host`` or ``device``: auto takes the device on a GPU where the method has a device form."""
    if cfg.compress_on == "auto":
        return "device" if device_type == "cuda" and not compress_on_device_blocker(cfg, compression) else "host"
    return cfg.compress_on

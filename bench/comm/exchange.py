"""The timed unit of communication a strategy hands its schedule (``before_step``, ``after_backward``,
``after_update``): the driver times ``run()`` and records it per layer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Exchange:
    """One timed unit of communication: ``run()`` moves the data of ``layers`` and returns the bytes it moved
    (sent; received for a parameter-server pull). When it covers several layers (a bucket) the driver shares its
    time among them by bytes. ``series`` names a Recorder series that also gets the time: per layer when the
    exchange has layers (e.g. ``ps/push``), a scalar per step when it has none (e.g. ``timing/wait``, for waiting
    on a reply header, which is no layer's communication)."""

    layers: tuple[int, ...]
    run: Callable[[], int]
    series: str | None = None

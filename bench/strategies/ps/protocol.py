"""The parameter-server wire format shared by workers and servers (``ps`` and ``ssp``).

Gradients and parameters travel as one message per *piece* (the part of a layer one server owns, see
:mod:`kernels.shard_map`), float32, with tag ``tag_for(PS_PUSH | PS_PULL, piece.index)``. In the event-driven
modes (``ps --ps-mode async``, ``ssp``) each push and each reply is preceded by a small float64 header on the
PS_CONTROL tags, which carries the clocks and versions staleness is computed from, and the stop flag that ends the
run in order (no collective can be used while workers are at different steps).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from kernels.tags import Tag, tag_for

HEADER_LEN = 6


class Kind(IntEnum):
    PUSH = 1  # worker -> server: [PUSH, step, version the gradient was computed on, stop request, 0, 0]
    BYE = 2  # worker -> server: [BYE, steps done, 0, 0, 0, 0]; the worker sends nothing after it
    REPLY = 3  # server -> worker: [REPLY, version, stop, clocks ahead of the slowest, seconds deferred, 0]


def header(kind: Kind, a: float = 0.0, b: float = 0.0, c: float = 0.0, d: float = 0.0, e: float = 0.0) -> np.ndarray:
    return np.array([int(kind), a, b, c, d, e], dtype=np.float64)


def to_server_tag(tag_ub: int) -> int:
    return tag_for(Tag.PS_CONTROL, 0, tag_ub)


def to_worker_tag(tag_ub: int) -> int:
    return tag_for(Tag.PS_CONTROL, 1, tag_ub)


def push_tag(piece: int, tag_ub: int) -> int:
    return tag_for(Tag.PS_PUSH, piece, tag_ub)


def pull_tag(piece: int, tag_ub: int) -> int:
    return tag_for(Tag.PS_PULL, piece, tag_ub)

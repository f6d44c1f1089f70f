"""The parameter-server wire format shared by workers and servers (``ps`` and ``ssp``).

Gradients and parameters travel as one message per *piece* (the part of a layer one server owns, see
:mod:`kernels.shard_map`), float32, with tag ``tag_for(PS_PUSH | PS_PULL, piece.index)``. In the event-driven
modes (``ps --ps-mode async``, ``ssp``) each push and each reply is preceded by a small float64 header on the
PS_CONTROL tags, which carries the clocks and versions staleness is computed from, and the stop flag that ends the
run in order (no collective can be used while workers are at different steps). A header is ``HEADER_LEN`` float64
values: slot ``KIND`` says which message it is, and each kind names its other slots (:class:`Push`,
:class:`Bye`, :class:`Reply`); unnamed slots are zero.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from kernels.tags import Tag, tag_for

HEADER_LEN = 6
KIND = 0  # the slot every header starts with


class Kind(IntEnum):
    PUSH = 1  # worker -> server, before the pieces of one step's gradient
    BYE = 2  # worker -> server: the worker sends nothing after it
    REPLY = 3  # server -> worker, before the pieces of the parameters


class Push(IntEnum):
    STEP = 1  # the worker's step
    VERSION = 2  # server version of the parameters the gradient was computed on
    STOP = 3  # 1: a stop was asked for on the worker's rank


class Bye(IntEnum):
    STEPS_DONE = 1


class Reply(IntEnum):
    VERSION = 1  # server version of the parameters that follow
    STOP = 2  # 1: this was the last step
    CLOCKS_AHEAD = 3  # clocks the worker is ahead of the slowest (ssp)
    DEFERRED_S = 4  # seconds the reply was held back (the staleness bound, or a busy server)


def header(kind: Kind, **slots: float) -> np.ndarray:
    """A header of ``kind`` with the named slots of that kind set, e.g. ``header(Kind.BYE, STEPS_DONE=12)``."""
    names = {Kind.PUSH: Push, Kind.BYE: Bye, Kind.REPLY: Reply}[kind]
    msg = np.zeros(HEADER_LEN, dtype=np.float64)
    msg[KIND] = int(kind)
    for name, value in slots.items():
        msg[names[name]] = value
    return msg


def to_server_tag(tag_ub: int) -> int:
    return tag_for(Tag.PS_CONTROL, 0, tag_ub)


def to_worker_tag(tag_ub: int) -> int:
    return tag_for(Tag.PS_CONTROL, 1, tag_ub)


def push_tag(piece: int, tag_ub: int) -> int:
    return tag_for(Tag.PS_PUSH, piece, tag_ub)


def pull_tag(piece: int, tag_ub: int) -> int:
    return tag_for(Tag.PS_PULL, piece, tag_ub)

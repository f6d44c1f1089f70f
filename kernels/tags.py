"""The one registry of MPI message tags used by syncbench.

Every point-to-point message carries a tag from :class:`Tag`. Keeping them in one enum means two kernels can
never collide on a tag by accident, and a message seen in a debugger can be named.
Per-layer messages use :func:`tag_for` so that messages of different layers are never matched against each
other. MPI guarantees tags up to 32767 only, so tags are folded into that range.
"""

from enum import IntEnum


class Tag(IntEnum):
    """Base tags, one per kind of message."""

    RING = 1  # ring all-reduce: reduce-scatter and all-gather chunks
    NAIVE = 2  # reference all-reduce: gather to root, then broadcast
    PS_PUSH = 3  # worker -> server gradient shard
    PS_PULL = 4  # server -> worker parameter shard
    PS_CONTROL = 5  # worker <-> server clocks, requests and stop messages
    FED_MODEL = 6  # aggregator -> client rank: global model
    FED_UPDATE = 7  # client rank -> aggregator: update and sample count
    FED_CONTROL = 8  # aggregator <-> client rank: round plan and stop
    MICRO = 9  # microbenchmarks
    TEST = 10  # tests only
    DIAGNOSIS_ASK = 11  # a timed-out rank -> every rank: where are you? (on the watchdog's own communicator)
    DIAGNOSIS_REPLY = 12  # its answer: last point reached, waiting or not
    GATHERV = 13  # ring all-gather of variable-length payloads (compressed gradients): size, then payload
    BLOCKS = 14  # ring all-gather and reduce-scatter of equal blocks (kernels/collectives.py)
    BCAST = 15  # binomial-tree broadcast (kernels/collectives.py)
    NODE = 16  # hierarchical all-reduce: messages between the ranks of one node (kernels/hierarchical.py)


def tag_for(base: Tag, index: int = 0, tag_ub: int = 32767) -> int:
    """Tag for item ``index`` (a layer, chunk or client) of a message kind, inside ``[0, tag_ub]``.

    Kinds are interleaved (``index * len(Tag) + base``) so that every kind keeps its own residue class and
    two kinds never share a tag for the same index; the result wraps modulo the largest multiple of
    ``len(Tag)`` that fits, so a wrap can only make a kind reuse one of its *own* tags, which is safe because
    MPI keeps messages between one pair of ranks in order.
    """
    if index < 0:
        raise ValueError(f"tag index must be >= 0, got {index}")
    kinds = len(Tag) + 1
    period = (tag_ub // kinds) * kinds
    return (index * kinds + int(base)) % period


def tag_upper_bound(comm) -> int:
    """The largest tag ``comm`` accepts (``MPI_TAG_UB``; at least 32767 by the standard)."""
    from mpi4py import MPI

    ub = comm.Get_attr(MPI.TAG_UB)
    return int(ub) if ub else 32767

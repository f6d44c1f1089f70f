"""An emulated inter-node link (``--emulate-link LATENCY_US,GBPS``): every message from one node to another
arrives no earlier than latency + bytes / bandwidth after the sender's node link was free, and each node has one
outgoing link that its ranks share (a NIC per node, full duplex: incoming traffic is not limited), so that
contention is emulated too. Messages inside a node are untouched.

Why pacing inside the suite's point-to-point layer rather than Linux network namespaces with ``tc netem`` on veth
links: the virtual nodes of ``--ranks-per-node`` are ranks of one MPICH job on one host, which talk through shared
memory, not TCP; netem would need MPICH's TCP channel and one namespace per virtual node, root, and a launcher
that places ranks into namespaces, and it could not be used under ``srun`` on a cluster. Pacing needs none of that,
applies to exactly the messages that cross a (virtual) node boundary, and is visible in the code that sends them.
Its limits: the sender waits (a paced ``Isend`` blocks until its message would have left), and MPI's own time on
the host adds to the emulated one (small next to 1-10 Gb/s links, not to microsecond latencies).

The link's state, the time each node's outgoing link is busy until, lives in a small shared file under
``/dev/shm`` (one float per node, ``time.monotonic`` seconds, the same clock in every process of a host), updated
under an ``fcntl`` lock on that node's bytes. Emulation is for virtual nodes on one host.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import time
from contextlib import contextmanager
from dataclasses import dataclass

from mpi4py import MPI

FLOAT = struct.Struct("d")


@dataclass(frozen=True)
class LinkSpec:
    latency_s: float
    bytes_per_s: float

    @classmethod
    def parse(cls, spec: str) -> LinkSpec:
        """``LATENCY_US,GBPS`` (microseconds, gigabits per second), both positive and finite."""
        try:
            latency, gbps = (float(x) for x in spec.split(","))
        except ValueError:
            raise ValueError(f"--emulate-link {spec!r}: expected LATENCY_US,GBPS, e.g. 50,1") from None
        if not (0 <= latency < 1e7 and 0 < gbps < 1e6):
            raise ValueError(f"--emulate-link {spec!r}: latency in [0, 1e7) us and bandwidth in (0, 1e6) Gb/s")
        return cls(latency * 1e-6, gbps * 1e9 / 8)

    def seconds(self, nbytes: int) -> float:
        """How long ``nbytes`` occupy the link (serialisation), without the latency."""
        return nbytes / self.bytes_per_s


class SharedLinks:
    """The busy-until time of every node's outgoing link, shared by the processes of one host."""

    def __init__(self, path: str, nodes: int):
        self.path, self.nodes = path, nodes
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(fd).st_size < nodes * FLOAT.size:
            os.ftruncate(fd, nodes * FLOAT.size)
        self.fd, self.map = fd, mmap.mmap(fd, nodes * FLOAT.size)

    def reserve(self, node: int, seconds: float) -> float:
        """Take the node's link for ``seconds`` from when it is free (now at the earliest); returns the start."""
        offset = node * FLOAT.size
        fcntl.lockf(self.fd, fcntl.LOCK_EX, FLOAT.size, offset)
        try:
            start = max(time.monotonic(), FLOAT.unpack_from(self.map, offset)[0])
            FLOAT.pack_into(self.map, offset, start + seconds)
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, FLOAT.size, offset)
        return start

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


def wait_until(deadline: float) -> None:
    """Sleep to a ``time.monotonic`` deadline: coarse sleeps first, then a spin for the last 200 us (a sleep
    overshoots by tens of microseconds)."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        if left > 2e-4:
            time.sleep(left - 2e-4)


class NodeComm:
    """An MPI communicator that counts the bytes this rank sends to ranks of other nodes (``take_across``: the
    results file's ``timing/comm_bytes_across``) and the time it spends in calls that exchange with them
    (``take_across_seconds``: ``timing/comm_across``), and, with an emulated link, makes those sends wait as the
    link would; every other call goes to the communicator itself.

    The time is that of the calls this layer sees: ``Send``, ``Ssend``, ``Sendrecv`` (to or from another node) and
    ``Recv`` from a named rank on another node (not from any source), pacing included; ``Isend`` only for its own
    call (pacing blocks there), and no ``Irecv`` or wait, which happen elsewhere. For the kernels of ring and
    localsgd (blocking Sendrecv loops, ``--overlap``'s thread too) it is their inter-node time; the hook-driven
    overlap's non-blocking steps are missed; a ps worker's wait for its servers' replies and a FedAvg tree's
    receipt of its children's reports are counted here although the step records them as waiting."""

    def __init__(self, comm, nodes: tuple[int, ...], spec: LinkSpec | None = None, links: SharedLinks | None = None):
        self._comm, self._nodes, self._spec, self._links = comm, nodes, spec, links
        self._mine = nodes[comm.rank] if nodes else 0
        self._across = 0
        self._across_s = 0.0

    def __getattr__(self, name):
        return getattr(self._comm, name)

    def take_across(self) -> int:
        """Bytes sent to other nodes since the last call."""
        across, self._across = self._across, 0
        return across

    def take_across_seconds(self) -> float:
        """Seconds in calls that exchanged with other nodes since the last call."""
        seconds, self._across_s = self._across_s, 0.0
        return seconds

    def _crosses(self, rank: int) -> bool:
        return rank >= 0 and bool(self._nodes) and self._nodes[rank] != self._mine

    @contextmanager
    def _clock(self, crosses: bool):
        if not crosses:
            yield
            return
        start = time.perf_counter()
        try:
            yield
        finally:
            self._across_s += time.perf_counter() - start

    def _pace(self, buf, dest: int) -> None:
        if not self._crosses(dest):
            return
        nbytes = _nbytes(buf)
        self._across += nbytes
        if self._spec is None:
            return
        occupied = self._spec.seconds(nbytes)
        start = self._links.reserve(self._mine, occupied)
        wait_until(start + occupied + self._spec.latency_s)

    def Send(self, buf, dest, tag=0):  # noqa: N802 (mpi4py's names)
        with self._clock(self._crosses(dest)):
            self._pace(buf, dest)
            return self._comm.Send(buf, dest, tag)

    def Ssend(self, buf, dest, tag=0):  # noqa: N802
        with self._clock(self._crosses(dest)):
            self._pace(buf, dest)
            return self._comm.Ssend(buf, dest, tag)

    def Isend(self, buf, dest, tag=0):  # noqa: N802
        with self._clock(self._crosses(dest)):
            self._pace(buf, dest)
            return self._comm.Isend(buf, dest, tag)

    def Recv(self, buf, source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=None):  # noqa: N802
        with self._clock(self._crosses(source)):
            return self._comm.Recv(buf, source, tag, status)

    def Sendrecv(self, sendbuf, dest, sendtag=0, recvbuf=None, source=MPI.ANY_SOURCE, recvtag=MPI.ANY_TAG,  # noqa: N802
                 status=None):  # fmt: skip
        with self._clock(self._crosses(dest) or self._crosses(source)):
            self._pace(sendbuf, dest)
            return self._comm.Sendrecv(sendbuf, dest, sendtag, recvbuf, source, recvtag, status)


def _nbytes(buf) -> int:
    """Bytes of a buffer argument as mpi4py takes it: an array, or [array, MPI datatype] and the like."""
    if isinstance(buf, (list, tuple)):
        buf = buf[0]
    nbytes = getattr(buf, "nbytes", None)  # not getattr's default: a tensor buffer has no memoryview
    return int(nbytes if nbytes is not None else len(memoryview(buf).cast("B")))


def emulated(comm, spec: str, nodes: tuple[int, ...]) -> NodeComm:
    """Collective: ``comm`` counting its bytes across nodes, and with ``--emulate-link`` pacing them, the node links
    shared through a file every rank of a host maps (removed once all have it open)."""
    if not spec:
        return NodeComm(comm, nodes)
    path = comm.bcast(f"/dev/shm/syncbench-link-{os.getpid()}-{time.time_ns()}" if comm.rank == 0 else None, root=0)
    links = SharedLinks(path, max(nodes) + 1)
    comm.Barrier()
    if comm.rank == 0 or not os.path.exists(path):
        _remove(path)
    return NodeComm(comm, nodes, LinkSpec.parse(spec), links)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:  # another host's rank 0 of the same name: each host has its own /dev/shm
        pass

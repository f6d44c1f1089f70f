"""The worker side of the parameter server: push each layer's gradient pieces to their owners, pull fresh
parameters back, one timed exchange per layer (the driver times them into ``ps/push`` and ``ps/pull``).

Pieces are walked in layer order, which visits servers in increasing order (see :mod:`kernels.shard_map`); with
blocking sends that total order is what rules out a cycle of workers and servers waiting on each other. In the
event-driven modes a header goes to a server just before the first piece for it, and replies start with a header
whose wait is the time this worker was held back (by the staleness bound, or by a busy server).
"""

from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

from bench.comm.cuda_aware import GpuPath
from bench.comm.exchange import Exchange
from bench.comm.pipeline import BucketPipeline, make_copies
from bench.comm.staging import HostStaging
from bench.compress.pieces import PieceEncoder
from bench.measure.buckets import BucketTiming
from bench.runtime.state import Stateful
from bench.strategies.ps.protocol import (
    HEADER_LEN,
    Kind,
    Reply,
    header,
    pull_tag,
    push_tag,
    to_server_tag,
    to_worker_tag,
)
from kernels.shard_map import ShardMap
from kernels.tags import tag_upper_bound

FLOAT_BYTES = 4


def _NOT_YET(layer: int) -> bool:  # noqa: N802 - a constant predicate
    return False


class PSWorker(Stateful):
    state_attributes = ("encoder", "version")  # what a checkpoint keeps (bench.runtime.state)

    def __init__(self, comm: MPI.Comm, servers: tuple[int, ...], layers, device, smap: ShardMap, headers: bool,
                 encoder: PieceEncoder | None = None, path: GpuPath | None = None, in_flight: int = 1,
                 push_order: list[int] | None = None):  # fmt: skip
        self.comm, self.servers, self.headers, self.encoder = comm, servers, headers, encoder
        self.rec = None  # the Recorder, for the compression series (set by the strategy)
        in_place = path is not None and path.in_place
        self.staging = HostStaging(layers, device, in_place=in_place)  # one buffer per layer, layer order
        # the pushes copy ``in_flight`` layers ahead (in push order); the pulls copy back in layer order
        self._copies, self._in_flight = make_copies(self.staging, device, in_place), in_flight
        self._push_order = list(range(len(layers))) if push_order is None else list(push_order)
        self.by_layer = [smap.pieces_of_layer(i) for i in range(len(layers))]
        self.active_from(0)
        self.tag_ub = tag_upper_bound(comm)
        self.version = np.zeros(len(servers))  # server version of the parameters last pulled from each server
        self.replies = np.zeros((len(servers), HEADER_LEN))
        self.step = 0
        self.stop_request = False  # set by the driver from its stop flag; travels in the next push header
        self.stop_seen = False  # a server said: this was the last step
        self._header_sent = [False] * len(servers)

    def active_from(self, first: int) -> None:
        """Push and pull the layers from ``first`` on (``--freeze``: the others are frozen). The pipelines walk
        those layers only: a pipeline starts its step at its order's first layer, which a frozen layer never is."""
        order = [layer for layer in self._push_order if layer >= first]
        self.pushes = BucketPipeline(self.staging, self._copies, self._in_flight, order)
        self.pulls = BucketPipeline(self.staging, self._copies, self._in_flight, list(range(first, len(self.by_layer))))

    # ---- push ------------------------------------------------------------------------------------------
    def push_exchanges(self) -> list[Exchange]:
        return [Exchange((i,), lambda i=i: self._push_layer(i), series="ps/push") for i in range(len(self.by_layer))]

    def begin_step(self, step: int) -> None:
        self.step = step
        self._header_sent = [False] * len(self.servers)

    def _push_layer(self, layer: int) -> int:
        return self._send_pieces(layer, self.pushes.fetch(layer, True))

    def push_timed(self, layer: int) -> BucketTiming:
        """``ps --overlap``: one layer's push from the communication thread, packing and sending timed apart. No
        layer is copied ahead of its turn (the thread does not know which gradients have landed)."""
        start = time.perf_counter()
        buf = self.pushes.fetch(layer, True, ready=_NOT_YET)
        comm_start = time.perf_counter()
        sent = self._send_pieces(layer, buf)
        end = time.perf_counter()
        return BucketTiming({layer: 1.0}, start, comm_start, end, end, sent)

    def _send_pieces(self, layer: int, buf: np.ndarray) -> int:
        sent = 0
        for piece in self.by_layer[layer]:
            dest = self.servers[piece.server]
            if self.headers and not self._header_sent[piece.server]:
                stop = 1.0 if self.stop_request else 0.0
                msg = header(Kind.PUSH, STEP=self.step, VERSION=self.version[piece.server], STOP=stop)
                self.comm.Send(msg, dest, to_server_tag(self.tag_ub))
                self._header_sent[piece.server] = True
                sent += msg.nbytes
            if self.encoder is None:
                self.comm.Send(buf[piece.lo : piece.hi], dest, push_tag(piece.index, self.tag_ub))
                sent += piece.numel * FLOAT_BYTES
                continue
            payload = self.encoder.encode(piece.index, self.step, buf[piece.lo : piece.hi])
            self.comm.Send(payload, dest, push_tag(piece.index, self.tag_ub))
            sent += payload.nbytes
            self._record(layer, payload.nbytes, piece.numel * FLOAT_BYTES)
        return sent

    def _record(self, layer: int, sent: int, dense: int) -> None:
        if self.rec is not None:
            self.rec["compress/sent_bytes"][self.step][layer] += sent
            self.rec["compress/dense_bytes"][self.step][layer] += dense
            self.rec["compress/residual_norm"][self.step] = self.encoder.feedback.residual_norm()

    # ---- pull ------------------------------------------------------------------------------------------
    def pull_exchanges(self) -> list[Exchange]:
        layers = [Exchange((i,), lambda i=i: self._pull_layer(i), series="ps/pull") for i in range(len(self.by_layer))]
        if not self.headers:
            return layers
        return [Exchange((), self._receive_replies, series="timing/wait"), *layers]

    def _receive_replies(self) -> int:
        for s, rank in enumerate(self.servers):
            self.comm.Recv(self.replies[s], rank, to_worker_tag(self.tag_ub))
        self.version[:] = self.replies[:, Reply.VERSION]
        self.stop_seen = bool(self.replies[:, Reply.STOP].any())
        return 0

    @property
    def clock_spread(self) -> float:
        return float(self.replies[:, Reply.CLOCKS_AHEAD].max())

    @property
    def blocked_s(self) -> float:
        return float(self.replies[:, Reply.DEFERRED_S].max())

    def _pull_layer(self, layer: int) -> int:
        buf = self.staging.numpy[layer]
        for piece in self.by_layer[layer]:
            self.comm.Recv(buf[piece.lo : piece.hi], self.servers[piece.server], pull_tag(piece.index, self.tag_ub))
        self.pulls.store(layer, False)
        return sum(piece.numel for piece in self.by_layer[layer]) * FLOAT_BYTES  # received: a pull moves these

    def rejoin(self) -> None:
        """A resumed event-driven run: wait for each server's reply (the staleness bound may hold a worker that was
        ahead) and pull the parameters as they are now, before the first step."""
        self._receive_replies()
        for layer in range(len(self.by_layer)):
            self._pull_layer(layer)

    def say_bye(self, steps_done: int) -> None:
        for rank in self.servers:
            self.comm.Send(header(Kind.BYE, STEPS_DONE=steps_done), rank, to_server_tag(self.tag_ub))

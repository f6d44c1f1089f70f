"""The server side of the parameter server: one shard of the parameters, its optimizer, and the three policies.
With LARS or LAMB the shard holds whole tensors (``shard_map(whole=...)``) and the optimizer steps each in its
own shape, so its trust ratio is the one the ring's ranks compute (sync ps == ring holds for them too).

- ``sync`` (BSP, :meth:`Server.serve_step`): lock-step; receive every worker's pieces (non-blocking receives from
  known sources), average in worker order, one optimizer step, send the new parameters to every worker.
- ``ssp`` (Ho et al. 2013, "More effective distributed ML via a stale synchronous parallel parameter server"):
  event-driven (:meth:`Server.serve`). A worker's clock is the number of gradients it has pushed; the gradients of
  clock c are applied together, averaged in worker order, once every worker has pushed clock c (updates are
  committed at clock boundaries, as in the paper). A worker that has pushed clock c - 1 gets its reply (and so may
  start step c) only when every worker's clock is >= c - s. With s = 0 this is exactly ``sync``.
  Staleness (clocks) = clocks applied when the gradient is applied - clocks applied in the parameters it was
  computed on; the bound guarantees it is <= s.
- ``async`` (Dean et al. 2012, Downpour SGD): event-driven; each gradient is applied as it arrives, scaled by 1/W so
  that W updates move the parameters as far as one synchronous step, and the worker is answered at once.
  Staleness (updates) = updates applied at apply time - updates applied in the parameters it was computed on.

Replies are sent non-blocking from a per-worker copy of the parameters, so a server never blocks on a worker that is
busy elsewhere; every outstanding request is completed before the server returns.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from mpi4py import MPI

from bench.compress.pieces import PieceDecoder
from bench.runtime.state import Stateful
from bench.strategies.ps.protocol import pull_tag, push_tag
from bench.workload.optim import make_optimizer, set_lr
from kernels.shard_map import ShardMap
from kernels.tags import tag_upper_bound
from kernels.waiting import wait_any


def mean_in_worker_order(grads: list[np.ndarray], out: np.ndarray) -> np.ndarray:
    """sum_w g_w / W, summed in worker order so that ``sync`` and ``ssp`` with s = 0 give identical bits."""
    np.copyto(out, grads[0])
    for g in grads[1:]:
        out += g
    out *= 1.0 / len(grads)
    return out


LAYERWISE = ("lars", "lamb")
"""Optimizers with a trust ratio per parameter tensor: the shard map keeps every tensor on one server for them."""


def tensor_views(values: np.ndarray, lo: int, shapes) -> list[tuple[slice, torch.Size]]:
    """The slices of a server's flat ``values`` (flat offset ``lo``) that are whole parameter tensors of the given
    ``shapes`` (all the model's, in flat order), with each tensor's shape."""
    views, offset = [], 0
    for shape in shapes:
        n = int(np.prod(shape, dtype=np.int64))
        a, b = offset - lo, offset + n - lo
        if 0 <= a and b <= values.size:
            views.append((slice(a, b), torch.Size(shape)))
        elif a < values.size and b > 0:
            raise ValueError(f"tensor at flat offset {offset} is split across servers")
        offset += n
    return views


class Server(Stateful):
    state_attributes = ("values", "applied", "optimizer", "update_log", "epochs")  # what a checkpoint keeps

    def __init__(
        self, cfg, comm: MPI.Comm, index: int, workers: tuple[int, ...], smap: ShardMap, initial: np.ndarray, shapes
    ):
        self.cfg, self.comm, self.workers = cfg, comm, workers
        lo, hi = smap.server_range(index)
        self.values = initial[lo:hi].copy()
        self.applied = 0  # updates applied (the learning-rate schedule's clock)
        # LARS and LAMB see each whole tensor in its own shape (a trust ratio per tensor, biases and norms apart);
        # every other optimizer is elementwise and steps the shard as one flat tensor
        self.views = tensor_views(self.values, lo, shapes) if cfg.optimizer in LAYERWISE else [(slice(None), None)]
        self.params = [torch.nn.Parameter(self._tensor(self.values, sl, shape)) for sl, shape in self.views]
        self.optimizer = make_optimizer(self.params, cfg)
        self.lo, self.pieces = lo, smap.pieces_of_server(index)
        self.slices = [(p.index, self._slice(p)) for p in self.pieces]
        self.held: list[tuple[slice, np.ndarray]] = []  # frozen pieces' values, put back after every update
        self.tag_ub = tag_upper_bound(comm)
        self.numel = hi - lo
        self._free: list[np.ndarray] = []
        self._mean = np.empty(self.numel, dtype=np.float32)
        self.updates: list[tuple[int, int, float]] = []  # (worker rank, worker step, staleness) per applied gradient
        self.epochs = np.zeros(1, dtype=np.int64)  # where each gather's entries begin in updates (log_for_gather)
        method = cfg.exchange_compression.method
        self.decoder = PieceDecoder(method, self.slices) if method else None

    @property
    def update_log(self) -> np.ndarray:
        """``updates`` as one array (worker rank, worker step, staleness) per row, for a checkpoint: the results
        file's ``ps/updates/*`` are the whole run's log, so a resumed run carries the log of the rows before."""
        return np.array(self.updates, dtype=np.float64).reshape(-1, 3)

    @update_log.setter
    def update_log(self, rows: np.ndarray) -> None:
        self.updates = [(int(w), int(step), float(stale)) for w, step, stale in rows]

    def log_for_gather(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole log, each entry with its epoch: the number of gathers before it was logged. Rank 0 orders
        every server's entries by (epoch, server, position), so the entries a gather adds follow every entry an
        earlier gather wrote (the results file appends them; a whole-log order by server would not)."""
        log = self.update_log
        epoch = np.searchsorted(self.epochs, np.arange(len(log)), side="right") - 1
        self.epochs = np.append(self.epochs, len(log))
        return log, epoch

    def load_state_dict(self, state: dict) -> None:
        """Restored: the resumed segment's entries start a new epoch (after those the checkpoint's flush wrote)."""
        super().load_state_dict(state)
        self.epochs = np.append(self.epochs, len(self.updates))

    # ---- shared pieces ----------------------------------------------------------------------------------
    def _buffer(self) -> np.ndarray:
        return self._free.pop() if self._free else np.empty(self.numel, dtype=np.float32)

    def receive_grads(self, worker: int, into: np.ndarray) -> list[MPI.Request]:
        """Receives of one push into ``into`` (compressed: into its byte buffers; :meth:`arrived` decodes)."""
        if self.decoder is not None:
            wire = self.decoder.wire_for(into)
            return [self.comm.Irecv(raw, worker, push_tag(i, self.tag_ub)) for raw, (i, _) in zip(wire, self.slices)]
        return [self.comm.Irecv(into[sl], worker, push_tag(i, self.tag_ub)) for i, sl in self.slices]

    def arrived(self, grad: np.ndarray) -> None:
        """After a push's receives completed: its gradient in ``grad`` (decompressed, if compressed)."""
        if self.decoder is not None:
            self.decoder.decode(grad)

    def send_values(self, worker: int, values: np.ndarray) -> list[MPI.Request]:
        return [self.comm.Isend(values[sl], worker, pull_tag(i, self.tag_ub)) for i, sl in self.slices]

    def freeze_layers(self, count: int) -> None:
        """``--freeze``: the first ``count`` layers are frozen. Their pieces are no longer received nor sent, and
        the update puts their values back (the shard steps as one flat tensor, whose momentum and weight decay would
        move them)."""
        frozen = [p for p in self.pieces if p.layer < count]
        self.held = [(sl, self.values[sl].copy()) for sl in (self._slice(p) for p in frozen)]
        self.slices = [(p.index, self._slice(p)) for p in self.pieces if p.layer >= count]

    def _slice(self, piece) -> slice:
        return slice(piece.offset - self.lo, piece.offset - self.lo + piece.numel)

    def _apply(self, grad: np.ndarray) -> None:
        """One update; the schedule counts a worker's steps (sync: one update per step; async, ssp: one per
        worker per step)."""
        per_step = 1 if self.cfg.ps_mode == "sync" else len(self.workers)
        set_lr(self.optimizer, self.cfg, self.applied // per_step, self.cfg.steps)
        self.applied += 1
        for sl, _ in self.held:  # frozen pieces were not received: no stale or uninitialised values in the step
            grad[sl] = 0.0
        for param, (sl, shape) in zip(self.params, self.views):
            param.grad = self._tensor(grad, sl, shape)
        self.optimizer.step()
        for sl, kept in self.held:
            self.values[sl] = kept

    @staticmethod
    def _tensor(flat: np.ndarray, sl: slice, shape) -> torch.Tensor:
        """A tensor sharing memory with ``flat[sl]`` (in ``shape``, if given)."""
        t = torch.from_numpy(flat[sl])
        return t if shape is None else t.view(shape)

    # ---- sync (lock-step, inside the driver's loop) -------------------------------------------------------
    def serve_step(self, step: int) -> tuple[float, float, float, float]:
        """One BSP step; returns seconds spent (receive, apply, send, idle)."""
        bufs = [self._buffer() for _ in self.workers]
        reqs = [r for w, buf in zip(self.workers, bufs) for r in self.receive_grads(w, buf)]
        t0 = time.perf_counter()
        wait_any(reqs)  # idle until the first gradient piece arrives (yielding the core: kernels.waiting)
        t1 = time.perf_counter()
        MPI.Request.Waitall(reqs)
        t2 = time.perf_counter()
        for buf in bufs:
            self.arrived(buf)
        self._apply(mean_in_worker_order(bufs, self._mean))
        self.updates.extend((w, step, 0.0) for w in self.workers)
        t3 = time.perf_counter()
        MPI.Request.Waitall([r for w in self.workers for r in self.send_values(w, self.values)])
        t4 = time.perf_counter()
        self._free.extend(bufs)
        return t2 - t1, t3 - t2, t4 - t3, t1 - t0

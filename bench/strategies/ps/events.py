"""The event-driven server loop of ``ps --ps-mode async`` and ``ssp`` (policies: see :mod:`server`).

The loop takes one header at a time from any worker (``Probe`` on ANY_SOURCE), receives that worker's pieces,
applies what may be applied, and answers every worker the bound now allows. The run ends in order without any
collective: when the server has received ``steps * W`` gradients (the same budget of updates as ``sync``: fast
workers take more steps than slow ones), when a worker asks to stop (a signal or stop file on that rank), or
when another server has ended it (a worker's goodbye), every reply carries the stop flag; each worker then says
goodbye to every server, and a server returns once all W have, with all its sends completed.
"""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
from mpi4py import MPI

from bench.runtime.watchdog import WATCHDOG
from bench.strategies.ps.protocol import HEADER_LEN, KIND, Kind, Push, header, to_server_tag, to_worker_tag
from bench.strategies.ps.server import Server, mean_in_worker_order
from kernels.waiting import wait_any


class EventServer(Server):
    state_attributes = (*Server.state_attributes, "clocks", "version", "pending", "row_times")

    def __init__(self, cfg, comm, index, workers, smap, initial, shapes, mode: str, staleness: int, budget: int):
        super().__init__(cfg, comm, index, workers, smap, initial, shapes)
        self.mode, self.bound, self.budget = mode, staleness, budget
        W = len(workers)
        self.clocks = np.zeros(W, dtype=np.int64)  # gradients received from each worker
        self.version = 0  # async: updates applied; ssp: clocks applied
        self.pending: dict[int, dict[int, tuple[np.ndarray, float]]] = defaultdict(dict)  # ssp: clock -> grads
        self.deferred: dict[int, float] = {}  # worker index -> time its reply was first due
        self.replies: list[list[MPI.Request]] = [[] for _ in workers]
        self.snapshots: list[tuple[np.ndarray, list[MPI.Request]]] = []  # parameter copies being sent
        self._spare: list[np.ndarray] = []
        self.reply_heads = [np.empty(HEADER_LEN) for _ in workers]  # alive until their Isend completes
        self.stopping = False
        self.rows: list[list[float]] = []  # per server step (W gradients): receive, apply, send, idle
        self.staleness_units = "updates" if mode == "async" else "clocks"
        self.rejoining = False  # resumed from a checkpoint: every worker waits for a reply before its first step

    @property
    def row_times(self) -> np.ndarray:
        """``rows`` as one array, for a checkpoint (a resumed server goes on filling its rows)."""
        return np.array(self.rows, dtype=np.float64).reshape(-1, 4)

    @row_times.setter
    def row_times(self, rows: np.ndarray) -> None:
        self.rows = [list(map(float, row)) for row in rows]

    def load_state_dict(self, state: dict) -> None:
        """A checkpoint taken when every worker had said goodbye: the clocks, the version and (ssp) the gradients
        of clocks not every worker reached, which the resumed run commits when they are complete."""
        super().load_state_dict(state)
        self.pending = defaultdict(dict, self.pending)
        self.rejoining = True

    def _row(self) -> list[float]:
        k = int(self.clocks.sum() - 1) // len(self.workers) if self.clocks.any() else 0
        while len(self.rows) <= k:
            self.rows.append([0.0, 0.0, 0.0, 0.0])
        return self.rows[k]

    def serve(self, stop_flag, timeout: float, on_row=None) -> None:
        """Serve until every worker has said goodbye; ``on_row()`` after every W gradients (progress).

        Each worker has at most one push in flight, so the receives of its next push (header and pieces) are
        posted as soon as the previous one is taken: a worker's large pieces never wait for the server to get
        round to posting a receive. The server sleeps in MPI on the W header receives only (waking once per
        push, not once per piece) and then completes that worker's pieces, which follow its header at once."""
        W = len(self.workers)
        done = np.zeros(W, dtype=bool)
        heads = [np.empty(HEADER_LEN) for _ in self.workers]
        posted = [self._post(w, heads[w]) for w in range(W)]
        status = MPI.Status()
        if self.rejoining:  # a resumed run: each worker waits for the bound to let it go on (PSWorker.rejoin)
            self.deferred = dict.fromkeys(range(W), time.perf_counter())
            self.rejoining = False
            self._answer()
        while not done.all():
            missing = [w for w, d in zip(self.workers, done) if not d]
            WATCHDOG.arm(timeout, f"parameter server waiting for workers {missing}")
            t0 = time.perf_counter()
            w = wait_any([posted[w][1][0] for w in range(W)], status)  # done workers' are null; yields the core
            t1 = time.perf_counter()
            grad, reqs = posted[w]
            if int(heads[w][KIND]) == Kind.BYE:  # no pieces will follow: withdraw their receives
                for r in reqs[1:]:
                    r.Cancel()
                MPI.Request.Waitall(reqs)
                self._free.append(grad)
                done[w] = True
                self.stopping = True
                self._answer()
                continue
            MPI.Request.Waitall(reqs)
            self.arrived(grad)
            row = self._row()
            row[3] += t1 - t0
            row[0] += time.perf_counter() - t1
            got = heads[w].copy()
            posted[w] = self._post(w, heads[w])  # before the reply: the next push finds its receives posted
            self._push_arrived(w, got, grad, stop_flag)
            if on_row is not None and self.clocks.sum() % W == 0:
                on_row()
        WATCHDOG.arm(timeout, "parameter server completing its last replies")
        for reqs in self.replies:
            MPI.Request.Waitall(reqs)
        WATCHDOG.disarm()

    def _post(self, w: int, head: np.ndarray) -> tuple[np.ndarray, list[MPI.Request]]:
        """Receives for worker ``w``'s next message: its header first, then the pieces of a push."""
        grad = self._buffer()
        rank = self.workers[w]
        reqs = [self.comm.Irecv(head, rank, to_server_tag(self.tag_ub)), *self.receive_grads(rank, grad)]
        return grad, reqs

    def _push_arrived(self, w: int, head: np.ndarray, grad: np.ndarray, stop_flag) -> None:
        t0 = time.perf_counter()
        self.clocks[w] += 1
        stop_flag.poll_file(self.cfg.stop_file)
        if head[Push.STOP] or stop_flag or self.clocks.sum() >= self.budget:
            self.stopping = True
        self._take(w, int(head[Push.STEP]), float(head[Push.VERSION]), grad)
        t1 = time.perf_counter()
        self.deferred[w] = t1
        self._answer()
        row = self._row()
        row[1] += t1 - t0
        row[2] += time.perf_counter() - t1

    # ---- applying ----------------------------------------------------------------------------------------
    def _take(self, w: int, step: int, version: float, grad: np.ndarray) -> None:
        rank = self.workers[w]
        if self.mode == "async":
            grad *= 1.0 / len(self.workers)
            self._apply(grad)
            self.updates.append((rank, step, self.version - version))
            self.version += 1
            self._free.append(grad)
            return
        self.pending[step][w] = (grad, version)
        while self.version < self.clocks.min():  # clock `version` is complete: commit it
            self._commit(self.version)
            self.version += 1

    def _commit(self, clock: int) -> None:
        grads = self.pending.pop(clock)
        order = sorted(grads)
        self._apply(mean_in_worker_order([grads[w][0] for w in order], self._mean))
        self.updates.extend((self.workers[w], clock, clock - grads[w][1]) for w in order)
        self._free.extend(grads[w][0] for w in order)

    def apply_leftovers(self) -> None:
        """ssp, at the end of a run: gradients of clocks not every worker reached (fast workers at the end), each
        counted 1/W. Not at a stop that is checkpointed: the checkpoint keeps them pending for the resumed run."""
        for clock in sorted(self.pending):
            grads = self.pending.pop(clock)
            total = np.zeros(self.numel, dtype=np.float32)
            for w in sorted(grads):
                total += grads[w][0]
                self.updates.append((self.workers[w], clock, clock - grads[w][1]))
            total *= 1.0 / len(self.workers)
            self._apply(total)

    # ---- answering ---------------------------------------------------------------------------------------
    def _allowed(self, w: int) -> bool:
        """May worker ``w`` (which has pushed clocks[w] gradients) start its next step?"""
        if self.stopping or self.mode == "async":
            return True
        return self.clocks.min() >= self.clocks[w] - self.bound

    def _snapshot(self) -> tuple[np.ndarray, list[MPI.Request]]:
        """A copy of the parameters to send from (they change with the next update). Workers answered together
        (e.g. all of them when a clock commits) share one copy; copies whose sends completed are reused."""
        keep = []
        for values, reqs in self.snapshots:
            if MPI.Request.Testall(reqs):
                self._spare.append(values)
            else:
                keep.append((values, reqs))
        self.snapshots = keep
        values = self._spare.pop() if self._spare else np.empty(self.numel, dtype=np.float32)
        np.copyto(values, self.values)
        self.snapshots.append((values, []))
        return self.snapshots[-1]

    def _answer(self) -> None:
        now = time.perf_counter()
        released = [w for w in self.deferred if self._allowed(w)]
        if not released:
            return
        values, sends = self._snapshot()
        for w in released:
            lead = float(self.clocks[w] - self.clocks.min())  # clocks ahead of the slowest worker (<= s in ssp)
            since = self.deferred.pop(w)
            MPI.Request.Waitall(self.replies[w])  # the worker got the last reply before pushing again
            rank = self.workers[w]
            msg = self.reply_heads[w]
            stop = 1.0 if self.stopping else 0.0
            msg[:] = header(Kind.REPLY, VERSION=self.version, STOP=stop, CLOCKS_AHEAD=lead, DEFERRED_S=now - since)
            self.replies[w] = [self.comm.Isend(msg, rank, to_worker_tag(self.tag_ub))]
            self.replies[w] += self.send_values(rank, values)
            sends.extend(self.replies[w])

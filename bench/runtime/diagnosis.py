"""Hang diagnosis: when the watchdog fires, say which ranks the others are waiting for, and where every rank is.

Every rank keeps its *point*: the row and place it last reached (:meth:`Points.mark`, a few attribute writes per
phase, from the schedules; :data:`PLACES` orders the places within a row, so that a parameter server serving a step
counts as far as the workers exchanging in it). A rank whose watchdog fires asks every other rank, over the
watchdog's own
duplicate of ``COMM_WORLD`` (its messages never meet the run's), where it is; each rank's watchdog thread answers
within a poll with its point and whether it is inside an armed wait, and dumps its Python stack (``faulthandler``,
all threads) to stderr, each line prefixed with its rank. The asker then prints every rank's point and names the
ranks furthest behind (smallest point): those the others wait for. A rank that does not answer within
:data:`ANSWER_WAIT_S` (hung inside a call that holds MPI's lock, or dead) is named as silent.

This needs ``MPI_THREAD_MULTIPLE`` (mpi4py's default); without it the watchdog only names the rank that timed out.
"""

from __future__ import annotations

import atexit
import faulthandler
import sys
import tempfile
import threading
import time

from mpi4py import MPI

from kernels.tags import Tag

ANSWER_WAIT_S = 3.0
"""How long a timed-out rank waits for the others' answers before it aborts the job."""
LISTED = 16
"""Ranks listed one by one; past that, the ranks are counted by point."""


PLACES = {  # place -> its order within a row (steps: the stepper's phases; rounds: the rounds schedule's)
    "exchange before the step": 0,
    "loading data": 1,
    "forward and backward": 2,
    "barrier before communication (--sync-wait)": 3,
    "exchange after backward": 4,
    "waiting for the overlapped buckets": 4,
    "serving the step": 4,
    "optimizer step": 5,
    "exchange after the update": 6,
    "round start": 0,
    "sending the model, receiving and folding the clients' updates": 1,
    "receiving the model, training and uploading clients": 1,
    "agreeing on a stop": 7,
    "evaluation": 8,
    "gathering results to rank 0": 9,
}


class Points:
    """This rank's last reached point, and its answers to other ranks' questions."""

    def __init__(self):
        self.row, self.order, self.label, self.since = -1, 0, "start-up", time.monotonic()
        self.unit = "step"  # what a row is (the run context sets "round" for fedavg)
        self.comm: MPI.Comm | None = None
        self._dumped = False
        self._pending: list[MPI.Request] = []
        self.askers: set[int] = set()  # ranks that asked this one where it is
        self._lock = threading.RLock()  # the watchdog thread's MPI calls against shutdown()

    def enable(self, comm: MPI.Comm) -> None:
        """Collective over ``comm``: a private duplicate to ask and answer on (only with MPI_THREAD_MULTIPLE)."""
        if comm.size > 1 and MPI.Query_thread() == MPI.THREAD_MULTIPLE:
            self.comm = comm.Dup()
            atexit.register(self.shutdown)  # before mpi4py finalizes MPI (that comes after Python's atexit hooks)

    def shutdown(self) -> None:
        """No more MPI calls from the watchdog thread once the process heads for MPI_Finalize (a poll that released
        the GIL inside MPI could otherwise overlap it; not seen in 30 exits with a 0.5 ms poll, kept as cheap
        insurance). Waits for a poll in progress to end."""
        with self._lock:
            self.comm = None

    def mark(self, row: int, label: str) -> None:
        """Reached place ``label`` (a key of PLACES) of ``row``."""
        self.row, self.order, self.label, self.since = row, PLACES[label], label, time.monotonic()

    def point(self, waiting: str) -> dict:
        since = time.monotonic() - self.since
        return {"row": self.row, "order": self.order, "label": self.label, "for_s": since, "waiting": waiting}

    def dump_stack(self) -> None:
        """This process's Python stacks (all threads) to stderr, once, each line prefixed with the rank."""
        if self._dumped:
            return
        self._dumped = True
        with tempfile.TemporaryFile("w+") as tmp:
            faulthandler.dump_traceback(file=tmp, all_threads=True)
            tmp.seek(0)
            lines = tmp.read().splitlines()
        rank = MPI.COMM_WORLD.rank
        sys.stderr.write("".join(f"syncbench: rank {rank} stack: {line}\n" for line in lines))
        sys.stderr.flush()

    def answer_questions(self, waiting: str) -> None:
        """From the watchdog thread: answer any rank that asked where this one is (and dump the stack)."""
        with self._lock:
            if self.comm is not None:
                self._answer(waiting)

    def _answer(self, waiting: str) -> None:
        while self.comm.Iprobe(MPI.ANY_SOURCE, Tag.DIAGNOSIS_ASK):
            status = MPI.Status()
            self.comm.recv(source=MPI.ANY_SOURCE, tag=Tag.DIAGNOSIS_ASK, status=status)
            self.askers.add(status.Get_source())
            self.dump_stack()
            self._pending.append(self.comm.isend(self.point(waiting), status.Get_source(), Tag.DIAGNOSIS_REPLY))

    def ask_everyone(self, waiting: str) -> dict[int, dict | None] | None:
        """From a timed-out rank's watchdog thread: every rank's point (None: no answer in ANSWER_WAIT_S). None
        when a lower rank timed out too and asked: it prints the diagnosis (one report, not one per rank)."""
        with self._lock:
            return self._ask(waiting)

    def _ask(self, waiting: str) -> dict[int, dict | None] | None:
        me = MPI.COMM_WORLD.rank
        found: dict[int, dict | None] = {me: self.point(waiting)}
        if self.comm is None:
            return found
        others = [r for r in range(self.comm.size) if r != me]
        self._pending += [self.comm.isend(None, r, Tag.DIAGNOSIS_ASK) for r in others]
        self.dump_stack()
        deadline = time.monotonic() + ANSWER_WAIT_S
        while time.monotonic() < deadline and len(found) <= len(others):
            self.answer_questions(waiting)  # another rank may be timing out and asking at the same time
            status = MPI.Status()
            if self.comm.Iprobe(MPI.ANY_SOURCE, Tag.DIAGNOSIS_REPLY, status):
                found[status.Get_source()] = self.comm.recv(source=status.Get_source(), tag=Tag.DIAGNOSIS_REPLY)
            else:
                time.sleep(0.01)
        if any(r < me for r in self.askers):
            return None
        return {r: found.get(r) for r in range(self.comm.size)}


def describe(found: dict[int, dict | None], unit: str = "step") -> str:
    """Lines for the abort message: the ranks furthest behind, then each rank's point (or a count per point).
    Rows are marked from 0; steps and rounds are printed numbered from 1 (0: before the first)."""
    answered = {r: p for r, p in found.items() if p is not None}
    silent = sorted(r for r, p in found.items() if p is None)
    key = {r: (p["row"], p["order"]) for r, p in answered.items()}
    lines = []
    if answered:
        low = min(key.values())
        behind = sorted(r for r in answered if key[r] == low)
        where = answered[behind[0]]
        lines.append(
            f"ranks furthest behind (the others wait for them): {behind} at {unit} {where['row'] + 1}, "
            f"'{where['label']}'" + (f"; no answer from ranks {silent}" if silent else "")
        )
    elif silent:
        lines.append(f"no answer from ranks {silent}")
    if len(found) <= LISTED:
        for r in sorted(answered):
            p = answered[r]
            state = f"watchdog armed for '{p['waiting']}'" if p["waiting"] else "watchdog not armed"
            lines.append(f"  rank {r}: {unit} {p['row'] + 1}, '{p['label']}' for {p['for_s']:.1f} s; {state}")
    else:
        counts: dict[tuple, int] = {}
        for p in answered.values():
            counts[(p["row"], p["label"])] = counts.get((p["row"], p["label"]), 0) + 1
        lines += [f"  {n} ranks at {unit} {row + 1}, '{label}'" for (row, label), n in sorted(counts.items())]
    return "\n".join(lines)


POINTS = Points()
"""The process-wide points (the watchdog's thread answers from them)."""

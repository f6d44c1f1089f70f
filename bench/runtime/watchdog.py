"""A per-process watchdog that turns a hang into an abort with a message naming the rank.

Blocking MPI calls cannot time out by themselves. Rather than polling requests in Python (slow, and a
receive loop that sleeps between polls is exactly what we avoid), the main thread *arms* the watchdog with
a deadline and a description before a phase that waits on peers, and disarms it after. A daemon thread
checks the deadline; if it passes, it prints ``rank R: timed out after T s in <what>`` and calls
``MPI_Abort`` on ``COMM_WORLD``, which ends every rank of the job. Arming costs two attribute writes, so it
can wrap every step. mpi4py releases the GIL inside blocking calls, so the thread runs while rank R waits.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from contextlib import contextmanager

from mpi4py import MPI

from bench.runtime.diagnosis import ANSWER_WAIT_S, POINTS, describe

ABORT_CODE_TIMEOUT = 124
LAST_WORDS_S = 0.5
"""Pause between printing why and MPI_Abort: the launcher forwards a rank's output asynchronously, and an abort
can kill the forwarding first (CI once lost the "second signal" message this way)."""


class Watchdog:
    def __init__(self, comm: MPI.Comm = MPI.COMM_WORLD, poll_s: float = 0.5):
        self._comm = comm
        self._poll_s = poll_s
        self._deadline = float("inf")
        self._what = ""
        self._timeout = 0.0
        self._hard_deadline = float("inf")
        self._hard_what = ""
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="syncbench-watchdog", daemon=True)
            self._thread.start()

    def _waiting(self) -> str:
        return self._what if self._deadline != float("inf") else ""

    def _run(self) -> None:
        while True:
            time.sleep(self._poll_s)
            POINTS.answer_questions(self._waiting())  # another rank timed out and asks where this one is
            now = time.monotonic()
            if now > self._deadline:
                self.abort(
                    f"timed out after {self._timeout:g} s waiting in {self._what}; aborting the job "
                    "(raise --timeout if peers are just slow)",
                    diagnose=True,
                )
            if now > self._hard_deadline:
                self.abort(f"{self._hard_what}; aborting the job")

    def abort(self, message: str, diagnose: bool = False) -> None:
        """Print ``rank R: message`` and end every rank of the job (callable from any thread). ``diagnose``: first
        ask every rank where it is and dump the stacks (:mod:`bench.runtime.diagnosis`)."""
        sys.stderr.write(f"syncbench: rank {self._comm.Get_rank()}: {message}\n")
        sys.stderr.flush()
        if diagnose:
            found = POINTS.ask_everyone(self._waiting())
            if found is None:  # a lower rank reports: give it the time to, before this rank's abort ends the job
                time.sleep(ANSWER_WAIT_S)
            else:
                where = describe(found, POINTS.unit)
                sys.stderr.write(f"syncbench: rank {self._comm.Get_rank()}: where the ranks are:\n{where}\n")
                sys.stderr.flush()
        time.sleep(LAST_WORDS_S)
        self._comm.Abort(ABORT_CODE_TIMEOUT)

    def hard_deadline(self, timeout_s: float, what: str) -> None:
        """Abort after ``timeout_s`` whatever :meth:`arm` does meanwhile (used once a stop was requested)."""
        self._ensure_thread()
        self._hard_what = what
        self._hard_deadline = min(self._hard_deadline, time.monotonic() + timeout_s)

    def enable_diagnosis(self, comm: MPI.Comm) -> None:
        """Collective over ``comm``: from now on every rank answers when another rank's watchdog fires (its
        thread starts now, so a rank that never waits still answers)."""
        POINTS.enable(comm)
        self._ensure_thread()

    def arm(self, timeout_s: float, what: str) -> None:
        """Abort the job unless :meth:`disarm` (or another :meth:`arm`) comes within ``timeout_s`` seconds."""
        if timeout_s <= 0:
            return
        self._ensure_thread()
        self._what = what
        self._timeout = timeout_s
        self._deadline = time.monotonic() + timeout_s

    def disarm(self) -> None:
        self._deadline = float("inf")

    @contextmanager
    def guard(self, timeout_s: float, what: str):
        self.arm(timeout_s, what)
        try:
            yield
        finally:
            self.disarm()


def abort_on_exception(exc_type, exc, tb, comm: MPI.Comm = MPI.COMM_WORLD) -> None:
    """Print an exception once, naming the rank, and abort the job (on one rank there is nothing to abort).
    Used as ``sys.excepthook`` (so an import failing on one node is covered) and by ``run_main``: a rank that
    merely exited would leave its peers blocked in MPI for ever (seen with MPICH's hydra)."""
    sys.stderr.write(f"syncbench: rank {comm.rank} of {comm.size} failed; aborting the job:\n")
    sys.stderr.write("".join(traceback.format_exception(exc_type, exc, tb)))
    sys.stderr.flush()
    if comm.size > 1:
        time.sleep(LAST_WORDS_S)
        comm.Abort(1)


WATCHDOG = Watchdog()
"""The process-wide watchdog (one thread per process)."""

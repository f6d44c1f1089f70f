"""SIGTERM / SIGUSR1 handling that works even while a rank is blocked inside MPI.

A Python signal handler runs only when the main thread returns to the interpreter, never while it waits in an
MPI call, so a hung rank could not be stopped that way. Instead :func:`block_early` blocks the signals in the
first thread, before MPI or torch start theirs (threads inherit the mask), and a dedicated thread takes them
with ``sigwait``:

- before ``train`` accepts them (argument parsing, ``micro``, ``overhead``), a signal aborts the job at once, with
  a message naming the rank;
- once it has (:meth:`StopFlag.accept`, called before set-up), the first SIGTERM (Slurm's time limit, scancel,
  a killed mpiexec) or SIGUSR1 (Slurm's ``--signal`` warning) asks the loop to stop at the next agreed step (the
  first one, when it came during set-up) and write its results; a rank that cannot get there within the grace
  period aborts the job; a second signal aborts at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


def block_early() -> None:
    """Call before importing mpi4py or torch."""
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)


class StopFlag:
    def __init__(self):
        self.signal_name = ""
        self.grace_s = 0.0
        self.accepting = False
        self._thread: threading.Thread | None = None

    def __bool__(self) -> bool:
        return bool(self.signal_name)

    def start(self) -> None:
        """Start the signal thread (once MPI is initialised, so it can abort the job)."""
        if self._thread is None and signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, []):
            self._thread = threading.Thread(target=self._wait, name="syncbench-signals", daemon=True)
            self._thread.start()

    def accept(self, grace_s: float) -> None:
        """From now on a first signal means: stop at the next agreed step, within ``grace_s`` seconds."""
        self.grace_s = grace_s
        self.accepting = True

    def poll_file(self, path: str) -> None:
        """A stop request by file (``--stop-file``): a signal can kill a process that has not yet blocked it
        (Slurm may send its warning up to a minute early, even before the ranks start), a file cannot."""
        if path and not self.signal_name and os.path.exists(path):
            try:
                reason = Path(path).read_text().strip()
            except OSError:
                reason = ""
            self.signal_name = reason or f"stop file {path}"

    def _wait(self) -> None:
        from bench.runtime.watchdog import WATCHDOG

        while True:
            name = signal.Signals(signal.sigwait(SIGNALS)).name
            if not self.accepting:
                WATCHDOG.abort(f"received {name}")
                os._exit(128 + int(signal.Signals[name]))  # not reached under MPI
            if self.signal_name:
                WATCHDOG.abort(f"second signal ({name}) while stopping")
            self.signal_name = name
            sys.stderr.write(f"syncbench: {name}: stopping at the next agreed step and writing results\n")
            WATCHDOG.hard_deadline(self.grace_s, f"could not stop within {self.grace_s:g} s of {name}")


STOP = StopFlag()

"""Process-wide clocks of the local work done inside an exchange, so the driver can record it as its own phase
and not as communication: packing (copying between model tensors and host buffers, ``timing/pack``) and
compression (``timing/compress``). A 1-rank ``ring`` moves no bytes and must report no communication time."""

from __future__ import annotations

import time


class PhaseClock:
    """Seconds spent in the functions it times (:meth:`timed`), summed over the process. The driver reads
    :attr:`seconds` around each exchange and takes the difference as that phase's time."""

    def __init__(self):
        self.seconds = 0.0

    def timed(self, fn):
        def run(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t

        return run


PACKING = PhaseClock()  # pack, unpack, scaling a sum into a mean (bench.comm.staging)
COMPRESSING = PhaseClock()  # compress and decompress, error feedback included (bench.compress)

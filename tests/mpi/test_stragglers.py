"""Injected straggler delay: only on the chosen rank, about (factor - 1) x its compute, seen by others as wait."""

import numpy as np
import pytest
from mpi4py import MPI

from .conftest import all_agree
from .test_ring_training import make_cfg, trainer_for


@pytest.mark.mpi(min_size=2)
def test_straggler_delay_recorded_apart_from_compute(shared_tmp):
    comm = MPI.COMM_WORLD
    slow = comm.size - 1
    cfg = make_cfg(shared_tmp, model="cnn", steps=8, straggler=f"{slow}:3")
    trainer = trainer_for(cfg)
    for step in range(cfg.steps):
        trainer.step(step, 0.0)
    rec = trainer.rec
    injected = rec["timing/injected"][1:]
    compute = (rec["timing/forward"] + rec["timing/backward"]).sum(axis=1)[1:]
    if comm.rank == slow:
        ratio = float(np.median(injected / compute))
        ok = bool((injected > 0).all()) and 1.8 < ratio < 4.0
    else:
        ok = bool((injected == 0).all())
    waits = comm.allgather(float(np.median(rec["timing/wait"][1:])))
    fast_wait = np.median([w for r, w in enumerate(waits) if r != slow])
    assert all_agree(ok), "injected delay missing, misplaced or not ~2x compute"
    assert all_agree(fast_wait > waits[slow]), f"fast ranks should wait for the straggler: {waits}"

"""Strategies ``ps`` and ``ssp`` against oracles: sync PS == ring == one process on the global batch; ssp with
s = 0 == sync PS bit for bit; the staleness bound holds with a straggler; async with one worker == serial."""

import dataclasses

import h5py
import numpy as np
import pytest
import torch
from mpi4py import MPI

from bench import setup
from bench.run.trainer import Trainer
from bench.runtime.signals import StopFlag

from .conftest import all_agree
from .test_ring_training import make_cfg, serial_oracle, trainer_for

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(240)]


def server_counts():
    size = MPI.COMM_WORLD.size
    return [s for s in (1, 2) if s < size]


def params_of(trainer) -> list[np.ndarray]:
    return [p.detach().numpy().copy() for p in trainer.run.model.parameters()]


def ring_on_workers(cfg, servers: int):
    """``ring`` on the worker ranks only (a sub-communicator), so its partitions match the PS workers'."""
    comm = MPI.COMM_WORLD
    sub = comm.Split(0 if comm.rank >= servers else MPI.UNDEFINED, comm.rank)
    if sub == MPI.COMM_NULL:
        return None
    ring_cfg = dataclasses.replace(cfg, strategy="ring", out=cfg.out + ".ring")
    run = setup.build(ring_cfg, sub)
    trainer = Trainer(run, sub, {"strategy": "ring", "config": {}, "world_size": sub.size}, StopFlag())
    for step in range(cfg.steps):
        trainer.step(step, 0.0)
    out = params_of(trainer)
    sub.Free()
    return out


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(momentum=0.9, weight_decay=1e-3),
        dict(optimizer="lars", momentum=0.9, lr=1.0, trust_coefficient=0.01, weight_decay=1e-3),
        dict(optimizer="lamb", lr=0.01, weight_decay=1e-3, lr_schedule="cosine", lr_warmup_steps=2),
        dict(accumulate_steps=2, momentum=0.9),
    ],
    ids=["sgd", "momentum-wd", "lars", "lamb-cosine-warmup", "accumulate-2"],
)
def test_sync_ps_equals_ring_and_serial(shared_tmp, kw):
    """LARS and LAMB: the servers' trust ratio per whole tensor must equal the ring's (a shard stepped as one flat
    tensor takes LARS's plain update and fails here)."""
    comm = MPI.COMM_WORLD
    if comm.size < 2:
        pytest.skip("a parameter server needs a server and a worker (2 ranks)")
    torch.set_num_threads(1)
    for servers in server_counts():
        cfg = make_cfg(shared_tmp, strategy="ps", servers=servers, **kw)
        trainer = trainer_for(cfg)
        for step in range(cfg.steps):
            trainer.step(step, 0.0)
        ours = params_of(trainer)
        ring = ring_on_workers(cfg, servers)
        ok = True
        if ring is not None:  # a worker: its pulled model against ring on the same workers and the serial run
            oracle = serial_oracle(cfg, comm.size - servers)
            ok = all(np.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(ours, ring))
            ok &= all(np.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(ours, oracle))
        assert all_agree(ok), f"sync ps with {servers} server(s) differs from ring / the serial oracle"


def run_to_end(cfg):
    trainer = trainer_for(cfg)
    trainer.train()
    MPI.COMM_WORLD.Barrier()
    return trainer


def test_ssp_zero_is_sync_ps_bit_for_bit(shared_tmp):
    comm = MPI.COMM_WORLD
    if comm.size < 2:
        pytest.skip("needs 2 ranks")
    torch.set_num_threads(1)
    servers = server_counts()[-1]
    common = dict(servers=servers, steps=6, momentum=0.5)
    sync = run_to_end(make_cfg(shared_tmp, strategy="ps", out=f"{shared_tmp}/sync.h5", **common))
    ssp = run_to_end(make_cfg(shared_tmp, strategy="ssp", staleness=0, out=f"{shared_tmp}/ssp.h5", **common))
    first_worker = servers
    ok = True
    if comm.rank == first_worker:
        ok = all(np.array_equal(a, b) for a, b in zip(params_of(sync), params_of(ssp)))
    assert all_agree(ok), "ssp with staleness 0 differs from sync ps"
    ok = True
    if comm.rank == 0:
        with h5py.File(f"{shared_tmp}/ssp.h5") as f:
            ok = bool((f["ps/updates/staleness"][()] == 0).all())
            ok &= bool((f["timing/steps_done"][servers:] == 6).all())
    assert all_agree(ok), "ssp s=0 had stale updates or uneven steps"


@pytest.mark.parametrize("bound", [1, 2, 4])
def test_staleness_bound_holds_with_a_straggler(shared_tmp, bound):
    comm = MPI.COMM_WORLD
    if comm.size < 3:
        pytest.skip("needs two workers to be out of step")
    torch.set_num_threads(1)
    out = f"{shared_tmp}/ssp{bound}.h5"
    cfg = make_cfg(
        shared_tmp, strategy="ssp", staleness=bound, steps=16, straggler=f"{comm.size - 1}:4", out=out, servers=1
    )
    run_to_end(cfg)
    ok, why = True, ""
    if comm.rank == 0:
        with h5py.File(out) as f:
            stale = f["ps/updates/staleness"][()]
            spread = f["ps/clock_spread"][()]
            done = f["timing/steps_done"][()]
            ok = stale.size > 0 and stale.max() <= bound and spread.max() <= bound
            ok &= stale.max() >= 1  # the straggler really let the others run ahead
            ok &= f["ps/updates/staleness"].attrs["units"] == "clocks"
            ok &= int(done[1:].sum()) >= 16 * (comm.size - 1)  # the budget of updates was spent
            why = f"bound {bound}: staleness max {stale.max() if stale.size else None}, spread {spread.max()}, {done}"
    assert all_agree(ok), why


def test_async_with_one_worker_is_serial_sgd(shared_tmp):
    """One worker: every gradient is applied at once with weight 1/W = 1, so async is plain SGD."""
    comm = MPI.COMM_WORLD
    if comm.size != 2:
        pytest.skip("one server and one worker")
    torch.set_num_threads(1)
    cfg = make_cfg(shared_tmp, strategy="ps", ps_mode="async", steps=5, out=f"{shared_tmp}/a.h5")
    trainer = run_to_end(cfg)
    ok = True
    if comm.rank == 1:
        ok = all(np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(params_of(trainer), serial_oracle(cfg, 1)))
    assert all_agree(ok), "async ps with one worker differs from serial SGD"


def test_async_records_staleness_and_the_new_groups(shared_tmp):
    comm = MPI.COMM_WORLD
    if comm.size < 3:
        pytest.skip("needs two workers")
    torch.set_num_threads(1)
    out = f"{shared_tmp}/async.h5"
    run_to_end(make_cfg(shared_tmp, strategy="ps", ps_mode="async", steps=8, out=out))
    ok, why = True, ""
    if comm.rank == 0:
        W = comm.size - 1
        with h5py.File(out) as f:
            L = len(f["layers/name"])
            stale = f["ps/updates/staleness"][()]
            ok = stale.size >= 8 * W and f["ps/updates/staleness"].attrs["units"] == "updates"
            ok &= f.attrs["status"] == "complete" and int(f["timing/steps_done"][1:].sum()) >= 8 * W
            ok &= f.attrs["train_wall_s"] > 0 and f.attrs["eval_and_io_s"] >= 0  # both written (the latter was not)
            for name in ("ps/push", "ps/pull", "ps/server_receive", "ps/server_apply", "ps/server_send"):
                ok &= name in f and f[name].attrs["units"] == "s"
            ok &= f["ps/push"].shape[2] == L and f["ps/push"][1:].sum() > 0 and f["ps/server_receive"][0].sum() > 0
            ok &= bool(np.isfinite(f["metrics/test_accuracy"][()]).all())
            why = f"staleness {stale.size} entries; steps {f['timing/steps_done'][()]}"
    assert all_agree(ok), why


def applied_log(path: str) -> list[tuple[int, int, int]]:
    with h5py.File(path) as f:
        return list(zip(*(f[f"ps/updates/{k}"][()].tolist() for k in ("server", "worker", "step_number"))))


def test_every_update_is_logged_once_across_flushes(shared_tmp):
    """Each server logs one entry per worker per step; with 2 servers and a flush every 5 of 12 steps the file's
    update log (appended at each flush) must hold each (server, worker, step) exactly once, in flush order.
    Catches a log gathered whole in server order and appended past the file's length (server 0's later entries
    lost, server 1's written twice)."""
    comm = MPI.COMM_WORLD
    if comm.size < 2:
        pytest.skip("a server and a worker")
    servers = server_counts()[-1]
    out = f"{shared_tmp}/flushed.h5"
    run_to_end(make_cfg(shared_tmp, strategy="ps", servers=servers, steps=12, flush_every=5, out=out))
    ok = True
    if comm.rank == 0:
        workers = range(servers, comm.size)
        expected = [(s, w, n) for n in range(1, 13) for s in range(servers) for w in workers]
        log = applied_log(out)
        first_flush = log[: 5 * servers * len(workers)]
        ok = sorted(log) == sorted(expected) and max(n for _, _, n in first_flush) == 5
    assert all_agree(ok), "the update log lost or repeated entries across flushes"

"""Strategy ``localsgd`` against oracles: tau = 1 equals ``ring``; any tau, warm-up and SlowMo equal a serial
simulation of p replicas in one process."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mpi4py import MPI

from bench.workload import data, models, partition
from bench.workload.loader import PartitionLoader

from .conftest import all_agree
from .test_ring_training import make_cfg, trainer_for


def is_sync_step(step: int, steps: int, tau: int, warmup: int) -> bool:
    """Post-local SGD (Lin et al. 2020, Sec. 3): average after every step of the warm-up, then after every tau-th
    local step counted from its end, and after the last step (so the run ends on one model). Written here, not
    imported from the strategy, so the oracle cannot share its schedule's bug."""
    return step < warmup or step == steps - 1 or (step - warmup + 1) % tau == 0


def params_of(model):
    return [p.detach().numpy().copy() for p in model.parameters()]


def serial_localsgd(cfg, ranks):
    """p replicas stepping on their own partitions; averaged (and SlowMo-updated) at the sync steps."""
    ds = data.load(cfg)
    parts = partition.make(cfg.partition, ds.y_train, ranks, cfg.seed, alpha=cfg.alpha)
    cpu = torch.device("cpu")
    loaders = [
        PartitionLoader(ds.x_train[p], ds.y_train[p], cfg.batch_size, cfg.seed, r, cpu) for r, p in enumerate(parts)
    ]
    reps = [models.build(cfg.model, ds.shape, ds.classes, cfg.seed) for _ in range(ranks)]
    opts = [torch.optim.SGD(m.parameters(), lr=cfg.lr, momentum=cfg.momentum) for m in reps]
    slow = params_of(reps[0])
    vel = [np.zeros_like(s) for s in slow]
    for step in range(cfg.steps):
        for m, opt, ld in zip(reps, opts, loaders):
            x, y = ld.next()
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            opt.step()
        if is_sync_step(step, cfg.steps, cfg.tau, cfg.warmup_steps):
            avg = [np.mean(ps, axis=0) for ps in zip(*[params_of(m) for m in reps])]
            if cfg.outer_momentum or cfg.outer_lr != 1.0:
                for i in range(len(avg)):
                    vel[i] = cfg.outer_momentum * vel[i] + (slow[i] - avg[i]) / cfg.lr
                    slow[i] = slow[i] - cfg.outer_lr * cfg.lr * vel[i]
                    avg[i] = slow[i].copy()
            for m in reps:
                for p, a in zip(m.parameters(), avg):
                    p.data.copy_(torch.from_numpy(a))
    return params_of(reps[0])


def run_steps(cfg):
    comm = MPI.COMM_WORLD
    trainer = trainer_for(cfg)
    synced_identical = True
    for step in range(cfg.steps):
        trainer.step(step, 0.0)
        if is_sync_step(step, cfg.steps, cfg.tau, cfg.warmup_steps):
            flat = np.concatenate([p.ravel() for p in params_of(trainer.run.model)])
            digests = comm.allgather(flat.tobytes())
            synced_identical &= all(d == digests[0] for d in digests)
    return trainer, synced_identical


@pytest.mark.mpi
def test_tau_one_equals_ring(shared_tmp):
    torch.set_num_threads(1)
    ring, _ = run_steps(make_cfg(shared_tmp, steps=4))
    local, same = run_steps(make_cfg(shared_tmp, steps=4, strategy="localsgd", local_steps=1))
    close = all(
        np.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(params_of(ring.run.model), params_of(local.run.model))
    )
    assert all_agree(same), "replicas differ after an average"
    assert all_agree(close), "localsgd with tau=1 differs from ring"


@pytest.mark.mpi
@pytest.mark.parametrize(
    "kw",
    [
        dict(local_steps=3),
        dict(local_steps=2, warmup_steps=2, momentum=0.9),
        dict(local_steps=2, outer_momentum=0.5, outer_lr=0.8, partition="dirichlet"),
    ],
    ids=["tau3", "warmup-momentum", "slowmo-dirichlet"],
)
def test_localsgd_equals_serial_replicas(shared_tmp, kw):
    comm = MPI.COMM_WORLD
    torch.set_num_threads(1)
    cfg = make_cfg(shared_tmp, strategy="localsgd", steps=7, **kw)
    trainer, same = run_steps(cfg)
    synced = trainer.rec["localsgd/synced"]
    expect = [is_sync_step(s, cfg.steps, cfg.tau, cfg.warmup_steps) for s in range(cfg.steps)]
    ok = list(synced.astype(bool)) == expect
    if comm.rank == 0:
        oracle = serial_localsgd(cfg, comm.size)
        ok &= all(np.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(params_of(trainer.run.model), oracle))
    assert all_agree(same), "replicas differ after an average"
    assert all_agree(ok), "localsgd differs from the serial simulation (or the sync record is wrong)"


def test_sync_schedule():
    """The strategy's schedule against hand-written sequences."""
    from bench.strategies.localsgd import is_sync_step as strategy_schedule

    assert [strategy_schedule(s, 10, 3, 0) for s in range(10)] == [0, 0, 1, 0, 0, 1, 0, 0, 1, 1]
    assert [strategy_schedule(s, 8, 4, 2) for s in range(8)] == [1, 1, 0, 0, 0, 1, 0, 1]


@pytest.mark.mpi
@pytest.mark.parametrize("slowmo", [False, True], ids=["plain", "slowmo"])
def test_lossless_compressed_averaging_of_the_change_equals_the_plain_average(shared_tmp, slowmo):
    """topk:1 keeps every entry: x0 + mean(x_r - x0) = mean(x_r) up to float rounding, with and without SlowMo;
    replicas stay bit-identical, and after the last step (which averages) the anchor x0 is the model."""
    torch.set_num_threads(1)
    kw = dict(strategy="localsgd", local_steps=3, steps=10, momentum=0.9)
    kw |= dict(outer_momentum=0.5, outer_lr=1.2) if slowmo else {}
    plain, lossless = (
        trainer_for(make_cfg(shared_tmp, **kw)),
        trainer_for(make_cfg(shared_tmp, compress="topk:1", **kw)),
    )
    for loop in (plain, lossless):
        for step in range(10):
            loop.step(step, 0.0)
    a = np.concatenate([x.ravel() for x in params_of(plain.run.model)])
    b = np.concatenate([x.ravel() for x in params_of(lossless.run.model)])
    replicas = MPI.COMM_WORLD.allgather(b.tobytes())
    assert all_agree(np.allclose(a, b, rtol=1e-5, atol=1e-6)), np.abs(a - b).max()
    assert all_agree(all(r == replicas[0] for r in replicas))
    strategy = lossless.run.strategy
    anchors = strategy.compressed.anchor
    assert all_agree(all(np.array_equal(strategy.staging.pack(g, grads=False), x0) for g, x0 in enumerate(anchors)))

"""Progressive layer freezing (``ring --freeze``, issue 33) against oracles at 1-4 ranks: until the freeze point a
run with freezing is the run without it, bit for bit; afterwards it is a serial global-batch oracle that holds the
same prefix at its values (not by autograd, as the suite does); frozen parameters do not move; the bytes each step
sends fall by exactly the frozen layers' bytes; AutoFreeze's decisions follow Eq. 1 on the norms it recorded."""

import dataclasses
import math

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mpi4py import MPI

from bench.workload import data, models, partition
from bench.workload.loader import PartitionLoader

from .conftest import all_agree
from .test_ring_training import make_cfg, trainer_for

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(240)]


def params(trainer) -> np.ndarray:
    return np.concatenate([p.detach().numpy().ravel() for p in trainer.run.model.parameters()])


def serial_frozen(cfg, ranks: int, frozen: int, after: int) -> np.ndarray:
    """SGD with momentum on the concatenation of every rank's batch; from step ``after`` on, the first ``frozen``
    layers are put back to their values at that step after every update (momentum and all)."""
    ds = data.load(cfg)
    parts = partition.make(cfg.partition, ds.y_train, ranks, cfg.seed, alpha=cfg.alpha)
    loaders = [PartitionLoader(ds.x_train[p], ds.y_train[p], cfg.batch_size, cfg.seed, r, torch.device("cpu"))
               for r, p in enumerate(parts)]  # fmt: skip
    model = models.build(cfg.model, ds.shape, ds.classes, cfg.seed)
    held = [p for layer in models.layers_of(model)[:frozen] for p in layer.params]
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    kept = None
    for step in range(cfg.steps):
        batches = [ld.next() for ld in loaders]
        opt.zero_grad()
        F.cross_entropy(model(torch.cat([b[0] for b in batches])), torch.cat([b[1] for b in batches])).backward()
        opt.step()
        if step + 1 == after:
            kept = [p.detach().clone() for p in held]
        if kept is not None:
            with torch.no_grad():
                for p, k in zip(held, kept):
                    p.copy_(k)
    return np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])


def run_steps(cfg):
    """Train step by step; returns the trainer, the loss of each step and the parameters after each."""
    trainer = trainer_for(cfg)
    after = []
    for step in range(cfg.steps):
        trainer.step(step, 0.0)
        after.append(params(trainer))
    return trainer, list(trainer.ctx.rec["metrics/loss"][: cfg.steps]), after


def test_fixed_freeze_is_the_plain_run_until_then_and_the_serial_oracle_after(shared_tmp):
    """cnn, momentum 0.9, fixed:2@4 over 8 steps. Mutations caught: freezing a step early or late (the first
    4 + 1 losses differ), frozen layers still updated by momentum, the prefix one layer long, replicas that froze
    differently."""
    torch.set_num_threads(1)
    comm = MPI.COMM_WORLD
    base = make_cfg(shared_tmp, model="cnn", momentum=0.9, steps=8, lr=0.05)
    plain_trainer, plain_loss, plain_after = run_steps(base)
    cfg = dataclasses.replace(base, freeze="fixed:2@4", out=f"{shared_tmp}/f.h5")
    trainer, loss, after = run_steps(cfg)
    layers = trainer.run.layers
    cut = sum(layer.numel for layer in layers[:2])
    ok = loss[:5] == plain_loss[:5] and loss[5:] != plain_loss[5:]  # step 5's loss is before its update
    ok &= all(np.array_equal(a, b) for a, b in zip(after[:4], plain_after[:4]))
    ok &= all(np.array_equal(a[:cut], after[3][:cut]) for a in after[4:])  # frozen from the freeze step on
    ok &= not np.array_equal(after[-1][cut:], after[3][cut:])
    digests = comm.allgather(after[-1].tobytes())
    ok &= all(d == digests[0] for d in digests)
    if comm.rank == 0:
        ok &= np.allclose(after[-1], serial_frozen(cfg, comm.size, 2, 4), rtol=1e-4, atol=1e-5)
    assert all_agree(ok), "freezing differs from the plain run before its step or the serial oracle after it"


def test_bytes_per_step_fall_by_exactly_the_frozen_layers(shared_tmp):
    """One bucket per layer (--bucket-mb 0): after the freeze a frozen layer sends nothing and an active layer
    sends what it sent before; the step's total falls by the frozen layers' bytes before the freeze; frozen
    layers take no backward time. Mutations caught: frozen layers still packed and reduced, buckets left as they
    were (their bytes then counted in full)."""
    torch.set_num_threads(1)
    cfg = make_cfg(shared_tmp, model="cnn", steps=6, bucket_mb=0.0, freeze="fixed:2@3", out=f"{shared_tmp}/b.h5")
    trainer_for(cfg).train()
    MPI.COMM_WORLD.Barrier()
    ok = True
    if MPI.COMM_WORLD.rank == 0:
        with h5py.File(cfg.out) as f:
            sent, frozen = f["timing/comm_bytes"][()], f["freeze/frozen_layers"][()]
            backward = f["timing/backward"][()]
        before, after = sent[:, :3], sent[:, 3:]
        ok = (frozen[:, :3] == 0).all() and (frozen[:, 3:] == 2).all()
        ok &= (after[:, :, :2] == 0).all() and (after[:, :, 2:] == before[:, :1, 2:]).all()
        ok &= (after.sum(axis=2) == before.sum(axis=2)[:, :1] - before[:, :1, :2].sum(axis=2)).all()
        ok &= MPI.COMM_WORLD.size == 1 or before[:, :, :2].sum() > 0
        ok &= (backward[:, 3:, :2] == 0).all()
    assert all_agree(ok), "bytes per step did not fall by the frozen layers' bytes"


def test_auto_freeze_follows_equation_1_on_the_norms_it_recorded(shared_tmp):
    """auto:0.5 every 2 steps on mlp: at each freeze point the new prefix is Eq. 1 (written out here) of the
    previous one and the recorded norms; every rank recorded the same; the prefix never shrinks."""
    torch.set_num_threads(1)
    cfg = make_cfg(shared_tmp, steps=8, freeze="auto:0.5", freeze_every=2, out=f"{shared_tmp}/a.h5")
    trainer_for(cfg).train()
    MPI.COMM_WORLD.Barrier()
    ok = True
    if MPI.COMM_WORLD.rank == 0:
        with h5py.File(cfg.out) as f:
            frozen, norms = f["freeze/frozen_layers"][()], f["freeze/grad_norm"][()]
        ok = (frozen == frozen[0]).all() and (norms == norms[0]).all()
        frozen, norms = frozen[0], norms[0]
        ok &= (np.diff(frozen) >= 0).all()
        for step in range(1, cfg.steps, 2):  # freeze points: after rows 1, 3, 5, 7
            was = int(frozen[step])
            active = list(range(was + 1, len(norms[step]) + 1))
            least = min(active, key=lambda layer: (norms[step][layer - 1], layer))
            expected = max(was, min(math.floor(was + 0.5 * (len(norms[step]) - was)), least))
            if step + 1 < cfg.steps:
                ok &= int(frozen[step + 1]) == expected
        ok &= bool(norms[1].any()) and frozen[-1] >= 1  # it froze something
    assert all_agree(ok), "AutoFreeze's decisions do not follow Eq. 1 on the recorded norms"


@pytest.mark.parametrize("progress", ["thread", "hooks"])
def test_overlapped_buckets_are_rebuilt_and_give_the_plain_freezing_run(shared_tmp, progress):
    """--overlap (thread or hooks) with fixed:2@3: the overlapped buckets are rebuilt over the active layers at the
    freeze (old hooks off, the old thread ended) and the run's parameters equal the non-overlapped run's bit for bit,
    as without freezing. Mutations caught: the old hooks left on (a bucket of frozen layers never completes: the
    step hangs, then the watchdog), the overlap not rebuilt."""
    torch.set_num_threads(1)
    base = make_cfg(shared_tmp, model="cnn", momentum=0.9, steps=6, lr=0.05, bucket_mb=0.0, freeze="fixed:2@3")
    _, _, plain = run_steps(base)
    overlapped = dataclasses.replace(base, overlap=True, overlap_progress=progress, out=f"{shared_tmp}/o.h5")
    trainer, _, after = run_steps(overlapped)
    ok = np.array_equal(plain[-1], after[-1]) and trainer.run.strategy.freezer.frozen == 2
    assert all_agree(ok), f"--overlap ({progress}) with freezing differs from the plain freezing run"


def test_localsgd_with_tau_1_freezes_as_ring_does(shared_tmp):
    """Plain SGD, tau = 1: localsgd averages parameters after every step, which is ring's averaged gradient step
    (to float rounding); with fixed:2@3 both freeze before step 4 (localsgd after that step's average), so the two
    runs end within float32 rounding, frozen parameters equal. Mutations caught: localsgd deciding before the
    average (a step early or late), its frozen layers still averaged or updated."""
    torch.set_num_threads(1)
    base = make_cfg(shared_tmp, model="cnn", steps=6, lr=0.05, freeze="fixed:2@3")
    ring_trainer, _, ring_after = run_steps(base)
    local = dataclasses.replace(base, strategy="localsgd", local_steps=1, out=f"{shared_tmp}/l.h5")
    trainer, _, after = run_steps(local)
    cut = sum(layer.numel for layer in trainer.run.layers[:2])
    ok = np.allclose(after[-1], ring_after[-1], rtol=1e-5, atol=1e-6) and trainer.run.strategy.freezer.frozen == 2
    ok &= np.array_equal(after[-1][:cut], after[2][:cut]) and not np.array_equal(after[1][:cut], after[2][:cut])
    assert all_agree(ok), "localsgd (tau = 1) with freezing differs from ring with freezing"


def test_localsgd_freezes_after_an_average_on_agreed_norms(shared_tmp):
    """tau = 3, auto:0.9 every 2 steps: decisions wait for the averages (after rows 2, 5, 8); every rank freezes the
    same prefix at the same row from the same recorded norms, and the replicas' frozen layers are identical and
    stay so. Mutation caught: deciding on each rank's own norms (tried: the recorded norms differ)."""
    torch.set_num_threads(1)
    comm = MPI.COMM_WORLD
    cfg = make_cfg(shared_tmp, model="cnn", steps=10, lr=0.05, strategy="localsgd", local_steps=3,
                   partition="dirichlet", freeze="auto:0.9", freeze_every=2, out=f"{shared_tmp}/la.h5")  # fmt: skip
    trainer, _, after = run_steps(cfg)
    frozen = trainer.ctx.rec["freeze/frozen_layers"][: cfg.steps].copy()
    norms = trainer.ctx.rec["freeze/grad_norm"][: cfg.steps].copy()
    rows = comm.allgather((frozen.tobytes(), norms.tobytes()))
    ok = all(r == rows[0] for r in rows) and frozen[-1] >= 1 and norms.any()  # the same norms: agreed
    changes = [s for s in range(1, cfg.steps) if frozen[s] != frozen[s - 1]]
    ok &= all(s in (3, 6, 9) for s in changes)  # the row after an average
    cut = sum(layer.numel for layer in trainer.run.layers[: int(frozen[-1])])
    digests = comm.allgather(after[-1][:cut].tobytes())
    ok &= all(d == digests[0] for d in digests)
    assert all_agree(ok), "localsgd's freezing decisions differ between ranks or come before an average"


@pytest.mark.parametrize("strategy", ["ring", "localsgd"])
def test_a_cached_prefix_gives_the_recomputed_run_and_records_its_hits(shared_tmp, strategy):
    """cnn, 32 training samples per rank (40 less the test fifth) in batches of 8 (4 steps an epoch), fixed:2@2 over
    12 steps: with --freeze-cache the run equals the one without (losses and parameters, to float32 rounding; bit
    for bit here), and so does one whose bound keeps 10 samples. Hits by hand: none in epoch 0 (rows 2-3 keep their
    16 samples), those 16 in epoch 1, all 8 a step in epoch 2; memory 32 (10) samples x 64 channels x 1 x 1
    float32. Mutations caught: activations served for the wrong samples, hits or memory not recorded, the cache
    left on before the freeze."""
    torch.set_num_threads(1)
    comm = MPI.COMM_WORLD
    extra = dict(local_steps=2) if strategy == "localsgd" else {}
    base = make_cfg(shared_tmp, model="cnn", momentum=0.9, steps=12, lr=0.05, synthetic_samples=40 * comm.size,
                    strategy=strategy, freeze="fixed:2@2", out=f"{shared_tmp}/c0.h5", **extra)  # fmt: skip
    _, plain_loss, plain = run_steps(base)
    ok = True
    for kept, mb in ((32, 1024.0), (10, 10 * 256 / 2**20)):
        cfg = dataclasses.replace(base, freeze_cache=True, freeze_cache_mb=mb, out=f"{shared_tmp}/c{kept}.h5")
        trainer, loss, after = run_steps(cfg)
        rec = trainer.ctx.rec
        hits, memory = rec["freeze/cache_hits"][: cfg.steps], rec["freeze/cache_bytes"][: cfg.steps]
        ok &= np.allclose(loss, plain_loss, rtol=1e-6, atol=1e-7) and np.allclose(after[-1], plain[-1], rtol=1e-6,
                                                                                   atol=1e-7)  # fmt: skip
        if kept == 32:
            ok &= hits[:4].sum() == 0 and hits[4:8].sum() == 16 and (hits[8:] == 8).all()
        else:
            ok &= hits[:4].sum() == 0 and hits[4:].sum() == 2 * 10
        ok &= memory[-1] == kept * 64 * 4 and memory[0] == 0
    assert all_agree(ok), f"{strategy} with --freeze-cache differs from the recomputed run or miscounts its hits"


def test_ddp_freezes_as_ring_does(shared_tmp):
    """cnn, momentum 0.9, fixed:2@3 over 6 steps: ddp (gloo's all-reduce inside backward, a new DDP wrapper at the
    freeze) ends where ring with the same freeze ends, to float32 rounding (the two sum in different orders); its
    frozen parameters hold from the freeze on and every replica is the same. Mutations caught: the wrapper kept
    (DDP's reducer then waits for the frozen layers' gradients and fails the next step), the freeze a step late."""
    torch.set_num_threads(1)
    comm = MPI.COMM_WORLD
    base = make_cfg(shared_tmp, model="cnn", momentum=0.9, steps=6, lr=0.05, freeze="fixed:2@3")
    _, _, ring_after = run_steps(base)
    trainer, _, after = run_steps(dataclasses.replace(base, strategy="ddp", out=f"{shared_tmp}/d.h5"))
    cut = sum(layer.numel for layer in trainer.run.layers[:2])
    ok = np.allclose(after[-1], ring_after[-1], rtol=1e-5, atol=1e-6) and trainer.run.strategy.freezer.frozen == 2
    ok &= np.array_equal(after[-1][:cut], after[2][:cut]) and not np.array_equal(after[1][:cut], after[2][:cut])
    ok &= list(trainer.ctx.rec["freeze/frozen_layers"][: base.steps]) == [0, 0, 0, 2, 2, 2]
    digests = comm.allgather(after[-1].tobytes())
    assert all_agree(ok and all(d == digests[0] for d in digests)), "ddp with freezing differs from ring's"


def test_sync_ps_freezes_as_the_serial_oracle(shared_tmp):
    """ps sync, 1 server and W = size - 1 workers, cnn, momentum 0.9, fixed:2@3 over 6 steps: each worker's model ends
    where the serial global-batch oracle over W parts ends (to float32 rounding: the server steps its shard as one
    flat tensor), its frozen layers as they were pulled after step 3; the frozen layers' pieces are neither pushed
    nor pulled after the freeze (their bytes 0, the others' unchanged); every rank, servers too, records the frozen
    count; the server's shard equals the workers' model. Mutations caught: frozen pieces still pushed or pulled, the
    server's momentum moving frozen values (its shard then differs from the workers' frozen layers), the freeze a
    step late, the workers' copy pipelines left walking the frozen layers (a pipeline starts its step at its first
    layer: the pushes then carried step 3's gradients, 0.036 off)."""
    torch.set_num_threads(1)
    comm = MPI.COMM_WORLD
    if comm.size < 2:
        pytest.skip("a server and a worker")
    cfg = make_cfg(shared_tmp, model="cnn", momentum=0.9, steps=6, lr=0.05, strategy="ps", servers=1,
                   freeze="fixed:2@3", out=f"{shared_tmp}/ps.h5")  # fmt: skip
    trainer, _, after = run_steps(cfg)
    rec = trainer.ctx.rec
    ok = list(rec["freeze/frozen_layers"][: cfg.steps]) == [0, 0, 0, 2, 2, 2]
    if comm.rank >= 1:
        cut = sum(layer.numel for layer in trainer.run.layers[:2])
        sent = rec["timing/comm_bytes"][: cfg.steps]
        ok &= (sent[3:, :2] == 0).all() and (sent[:3, :2] > 0).all() and (sent[3:, 2:] == sent[:1, 2:]).all()
        ok &= np.array_equal(after[-1][:cut], after[2][:cut]) and not np.array_equal(after[1][:cut], after[2][:cut])
        ok &= np.allclose(after[-1], serial_frozen(cfg, comm.size - 1, 2, 3), rtol=1e-6, atol=1e-7)  # equal here
    pulled = comm.bcast(after[-1] if comm.rank == 1 else None, root=1)
    if comm.rank == 0:  # the one server's shard is the whole model: what the workers hold, frozen layers included
        ok &= np.array_equal(trainer.run.strategy.server.values, pulled)
    assert all_agree(ok), "sync ps with freezing differs from the serial oracle or still moves frozen layers"

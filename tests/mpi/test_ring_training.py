"""Strategy ``ring`` against oracles: one process on the concatenated global batch; identical replicas; the
results file's documented datasets."""

import os

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mpi4py import MPI

from bench import setup
from bench.config import Config, validate
from bench.run.trainer import Trainer
from bench.runtime.signals import StopFlag
from bench.workload import data, models, partition
from bench.workload.loader import PartitionLoader
from tests.optim_reference import ReferenceOptimizer

from .conftest import all_agree


def make_cfg(tmp, **kw):
    base = dict(
        model="mlp",
        dataset="synthetic",
        synthetic_shape="1x6x6",
        synthetic_samples=512,
        steps=5,
        batch_size=8,
        lr=0.1,
        seed=3,
        quiet=True,
        eval_every=0,
        out=os.path.join(tmp, "r.h5"),
    )
    cfg = Config(**(base | kw))
    validate(cfg)
    return cfg


def serial_oracle(cfg, ranks):
    """One process: each step takes the concatenation of every rank's batch (same loaders, same seeds); with
    ``--accumulate-steps K``, of every rank's next K micro-batches, as one batch."""
    ds = data.load(cfg)
    parts = partition.make(cfg.partition, ds.y_train, ranks, cfg.seed, alpha=cfg.alpha)
    loaders = [
        PartitionLoader(ds.x_train[p], ds.y_train[p], cfg.batch_size, cfg.seed, r, torch.device("cpu"))
        for r, p in enumerate(parts)
    ]
    model = models.build(cfg.model, ds.shape, ds.classes, cfg.seed)
    opt = ReferenceOptimizer(model.parameters(), cfg, cfg.steps)  # the papers' updates, not bench's
    for step in range(cfg.steps):
        batches = [ld.next() for ld in loaders for _ in range(cfg.accumulate_steps)]
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step(step)
    return [p.detach().numpy().copy() for p in model.parameters()]


def trainer_for(cfg):
    comm = MPI.COMM_WORLD
    run = setup.build(cfg, comm)
    return Trainer(run, comm, {"strategy": cfg.strategy, "config": {}, "world_size": comm.size}, StopFlag())


@pytest.mark.mpi
@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(model="cnn", momentum=0.9, weight_decay=1e-3),
        dict(bucket_mb=0.01, partition="dirichlet"),
        dict(model="cnn", optimizer="lamb", lr=0.01, weight_decay=1e-3, lr_schedule="cosine", lr_warmup_steps=2),
        dict(optimizer="lars", momentum=0.9, lr=1.0, trust_coefficient=0.01, lr_schedule="step"),
        dict(accumulate_steps=3, momentum=0.9),
        dict(model="cnn", accumulate_steps=2, optimizer="lamb", lr=0.01),
    ],
    ids=[
        "mlp-sgd",
        "cnn-momentum-wd",
        "mlp-buckets-dirichlet",
        "cnn-lamb-cosine-warmup",
        "mlp-lars-step",
        "mlp-accumulate-3",
        "cnn-lamb-accumulate-2",
    ],
)
def test_ring_equals_serial_oracle_and_replicas_stay_identical(shared_tmp, kw):
    comm = MPI.COMM_WORLD
    torch.set_num_threads(1)
    cfg = make_cfg(shared_tmp, **kw)
    trainer = trainer_for(cfg)
    identical = True
    for step in range(cfg.steps):
        trainer.step(step, 0.0)
        flat = np.concatenate([p.detach().numpy().ravel() for p in trainer.run.model.parameters()])
        digests = comm.allgather(flat.tobytes())
        identical &= all(d == digests[0] for d in digests)
    ours = [p.detach().numpy() for p in trainer.run.model.parameters()]
    close = True
    if comm.rank == 0:
        oracle = serial_oracle(cfg, comm.size)
        close = all(np.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(ours, oracle))
        moved = any(
            not np.allclose(a, b)
            for a, b in zip(
                oracle, [p.detach().numpy() for p in models.build(cfg.model, (1, 6, 6), 10, cfg.seed).parameters()]
            )
        )
        close &= moved  # the oracle really trained
    assert all_agree(identical), "replicas diverged"
    assert all_agree(close), "ring parameters differ from the serial global-batch oracle"


@pytest.mark.mpi
def _datasets(f):
    """(name, dataset) of every dataset in the file that is not a dimension scale."""
    found = []
    f.visititems(
        lambda n, o: found.append((n, o)) if isinstance(o, h5py.Dataset) and not h5py.h5ds.is_scale(o.id) else None
    )
    return found


def test_results_file_has_documented_datasets(shared_tmp):
    comm = MPI.COMM_WORLD
    cfg = make_cfg(shared_tmp, steps=6, eval_every=3, flush_every=4, trace=True)
    trainer = trainer_for(cfg)
    trainer.train()
    comm.Barrier()
    ok, why = True, ""
    if comm.rank == 0:
        p, s, L = comm.size, 6, len(trainer.run.layers)
        with h5py.File(cfg.out, "r") as f:
            shapes = {
                "timing/forward": (p, s, L),
                "timing/backward": (p, s, L),
                "timing/comm": (p, s, L),
                "timing/comm_bytes": (p, s, L),
                "timing/total": (p, s),  # timing/step in memory; schema 3 names no dataset like a dimension
                "timing/wait": (p, s),
                "metrics/loss": (p, s),
                "layers/name": (L,),
                "layers/numel": (L,),
                "layers/bytes": (L,),
                "metrics/test_accuracy": (2,),
                "timeline/forward_start": (p, s, L),
            }
            for name, shape in shapes.items():
                if name not in f or f[name].shape != shape or "units" not in f[name].attrs:
                    ok, why = False, f"{name}: {f[name].shape if name in f else 'missing'} != {shape}"
            if ok:
                ok &= bool((f["timing/forward"][()] > 0).all() and (f["timing/backward"][()] > 0).all())
                ok &= bool((f["timing/total"][()] > 0).all())
                expect_comm = p > 1
                ok &= bool((f["timing/comm"][()] > 0).all()) == expect_comm or not expect_comm
                ok &= bool((f["timing/comm_bytes"][()].sum(axis=(1, 2)) > 0).all()) == expect_comm
                ok &= f.attrs["completed_steps"] == s and f.attrs["status"] == "complete"
                ok &= int(f.attrs["world_size"]) == p and f.attrs["strategy"] == "ring"
                why = why or "timings or attributes wrong"
            if ok:  # schema 3: steps numbered from 1, every dataset on named dimension scales
                ok &= f["step"][()].tolist() == [1, 2, 3, 4, 5, 6] and f["metrics/eval_step"][()].tolist() == [3, 6]
                unnamed = [n for n, d in _datasets(f) if any(len(dim) != 1 or not dim.label for dim in d.dims)]
                ok &= not unnamed
                why = why or f"step numbers, or datasets without a named dimension scale: {unnamed}"
    assert all_agree(ok), why

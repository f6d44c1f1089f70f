"""``ring --overlap`` and ``ddp`` against oracles: the non-overlapped ring bit for bit (same kernel, same bucket
order), DDP to float tolerance, and the overlap timings' invariants in the results file."""

import h5py
import numpy as np
import pytest
import torch
from mpi4py import MPI

from bench.workload import models

from .conftest import all_agree
from .test_ring_training import make_cfg, trainer_for

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]


def trained_parameters(cfg) -> np.ndarray:
    torch.set_num_threads(1)
    trainer = trainer_for(cfg)
    for step in range(cfg.steps):
        trainer.step(step, 0.0)
    return np.concatenate([p.detach().cpu().numpy().ravel() for p in trainer.run.model.parameters()])


@pytest.mark.mpi
@pytest.mark.parametrize("progress", ["thread", "hooks"])
@pytest.mark.parametrize("bucket_mb", [0.0, 0.002, 1.0], ids=["per-layer", "small-buckets", "one-bucket"])
def test_overlapped_ring_is_bit_identical_to_the_ring(shared_tmp, bucket_mb, progress):
    kw = dict(model="cnn", momentum=0.9, bucket_mb=bucket_mb, steps=4)
    plain = trained_parameters(make_cfg(shared_tmp, **kw))
    overlapped = trained_parameters(make_cfg(shared_tmp, overlap=True, overlap_progress=progress, **kw))
    start = np.concatenate([p.detach().numpy().ravel() for p in models.build("cnn", (1, 6, 6), 10, 3).parameters()])
    moved = not np.array_equal(plain, start)  # the runs trained (make_cfg: seed 3, synthetic 1x6x6, 10 classes)
    assert all_agree(moved and np.array_equal(plain, overlapped)), "ring --overlap differs from ring"


@pytest.mark.mpi
@pytest.mark.parametrize("strategy", ["ring", "ring-hooks", "ps"])
def test_accumulation_with_overlap_is_bit_identical_without(shared_tmp, strategy):
    """--accumulate-steps 3 with --overlap: only the last micro-batch's backward may send (an earlier send would
    average a partial gradient, and the ranks' parameters would differ from the plain schedule's)."""
    if strategy == "ps" and MPI.COMM_WORLD.size < 2:
        pytest.skip("ps needs a server and a worker")
    kw = dict(model="cnn", momentum=0.9, bucket_mb=0.002, steps=3, accumulate_steps=3)
    kw |= dict(strategy="ps") if strategy == "ps" else {}
    plain = trained_parameters(make_cfg(shared_tmp, **kw))
    progress = "hooks" if strategy == "ring-hooks" else "thread"
    overlapped = trained_parameters(make_cfg(shared_tmp, overlap=True, overlap_progress=progress, **kw))
    assert all_agree(np.array_equal(plain, overlapped)), f"{strategy} --overlap --accumulate-steps 3 differs"


@pytest.mark.mpi
@CUDA
@pytest.mark.parametrize("strategy", ["ring", "ps"])
def test_overlap_on_cuda_gives_the_plain_schedule_bit_for_bit(shared_tmp, strategy):
    """The CUDA events that gate each bucket's copy to the host: without them the communication thread would copy
    gradients the GPU has not finished computing, and the parameters would differ."""
    if strategy == "ps" and MPI.COMM_WORLD.size < 2:
        pytest.skip("ps needs a server and a worker")
    kw = dict(model="resnet20", synthetic_shape="3x32x32", batch_size=64, strategy=strategy, momentum=0.9)
    kw |= dict(bucket_mb=0.05, steps=4, device="cuda")  # long enough kernels that an ungated copy would race them
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False  # cuDNN's weight gradients
    plain = trained_parameters(make_cfg(shared_tmp, **kw))
    again = trained_parameters(make_cfg(shared_tmp, **kw))
    overlapped = trained_parameters(make_cfg(shared_tmp, overlap=True, **kw))
    assert all_agree(np.array_equal(plain, again)), "two plain runs on cuda differ: nondeterministic GPU kernels"
    assert all_agree(np.array_equal(plain, overlapped)), f"{strategy} --overlap on cuda differs from {strategy}"


@pytest.mark.mpi
@pytest.mark.parametrize("accumulate", [1, 3])
@pytest.mark.parametrize("device", DEVICES)
def test_ddp_ends_where_the_ring_ends(shared_tmp, device, accumulate):
    """Also with --accumulate-steps 3 (DDP's no_sync on all micro-batches but the last)."""
    kw = dict(model="cnn", steps=4, bucket_mb=1.0, device=device, accumulate_steps=accumulate)
    ring = trained_parameters(make_cfg(shared_tmp, **kw))
    ddp = trained_parameters(make_cfg(shared_tmp, strategy="ddp", **kw))
    replicas = MPI.COMM_WORLD.allgather(ddp.tobytes())
    assert all_agree(np.allclose(ring, ddp, rtol=1e-5, atol=1e-6)), "ddp and ring differ beyond float rounding"
    assert all_agree(all(r == replicas[0] for r in replicas)), "ddp replicas diverged"


@pytest.mark.mpi
@pytest.mark.parametrize(
    "strategy, device",
    [("ring", "cpu"), ("ring-hooks", "cpu"), ("ddp", "cpu")]
    + [pytest.param(s, "cuda", marks=CUDA) for s in ("ring", "ddp")],
)
def test_exposed_time_lies_within_communication_within_the_step(shared_tmp, strategy, device):
    comm = MPI.COMM_WORLD
    extra = {"overlap": True, "overlap_progress": "hooks" if strategy == "ring-hooks" else "thread"}
    extra, strategy = (extra, "ring") if strategy.startswith("ring") else ({}, strategy)
    kw = dict(model="cnn", strategy=strategy, steps=6, bucket_mb=0.002, trace=True, device=device)
    cfg = make_cfg(shared_tmp, **kw, **extra)
    trainer_for(cfg).train()
    comm.Barrier()
    ok, why = True, ""
    if comm.rank == 0:
        with h5py.File(cfg.out, "r") as f:
            exposed, spent = f["timing/exposed"][()].astype(np.float64), f["timing/comm"][()].astype(np.float64)
            step = f["timing/total"][()].astype(np.float64)
            ok = f["timing/exposed"].attrs["units"] == "s" and exposed.shape == spent.shape
            ok &= bool((exposed >= 0).all() and (exposed <= spent + 1e-7).all())
            ok &= bool((spent.sum(axis=2) <= step + 1e-6).all())
            ok &= bool((spent.sum(axis=2) > 0).all()) if comm.size > 1 else bool((spent == 0).all())
            ok &= bool((f["timing/comm_bytes"][()].sum(axis=2) > 0).all()) == (comm.size > 1)
            why = f"exposed {exposed.sum(axis=2)}, comm {spent.sum(axis=2)}, step {step}"
    assert all_agree(ok), why


@pytest.mark.mpi
def test_ddp_accumulation_all_reduces_once_per_step(shared_tmp, monkeypatch):
    """Averaging is linear, so a DDP that all-reduced after every micro-batch would end on the same parameters:
    the count of its communication hook's calls is what tells (no_sync on all but the last micro-batch)."""
    from bench.strategies.ddp import DdpBuckets

    calls, real = [], DdpBuckets.hook

    def counting(self, dist):
        inner = real(self, dist)
        return lambda state, bucket: calls.append(1) or inner(state, bucket)

    monkeypatch.setattr(DdpBuckets, "hook", counting)
    kw = dict(model="cnn", steps=3, strategy="ddp")
    trained_parameters(make_cfg(shared_tmp, **kw))
    once = len(calls)
    trained_parameters(make_cfg(shared_tmp, accumulate_steps=3, **kw))
    assert all_agree(once > 0 and len(calls) == 2 * once), (once, len(calls))


@pytest.mark.mpi
@pytest.mark.parametrize("servers", [1, 2])
def test_overlapped_ps_pushes_give_the_sync_ps_bit_for_bit(shared_tmp, servers):
    """Each layer pushed from the communication thread as its gradient lands, last layer first, against the
    blocking pushes after backward in layer order: the servers average the same gradients in worker order."""
    if MPI.COMM_WORLD.size <= servers:
        pytest.skip(f"ps with {servers} server(s) needs more ranks")
    kw = dict(model="cnn", strategy="ps", servers=servers, momentum=0.9, steps=4)
    plain = trained_parameters(make_cfg(shared_tmp, **kw))
    overlapped = trained_parameters(make_cfg(shared_tmp, overlap=True, **kw))
    start = np.concatenate([p.detach().numpy().ravel() for p in models.build("cnn", (1, 6, 6), 10, 3).parameters()])
    worker = MPI.COMM_WORLD.rank >= servers  # a server's model object is not what it trains (it holds a shard)
    moved = not np.array_equal(plain, start) or not worker
    assert all_agree(moved and np.array_equal(plain, overlapped)), "ps --overlap differs from ps sync"

"""FedAvg against oracles: with every client, one local step, equal n_k and plain SGD it is localsgd with tau = 1
(= one SGD step on the mean gradient); updates after the deadline are excluded (the model stays as it was)."""

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
from .test_ring_training import make_cfg

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(240)]


def fed_cfg(tmp, **kw):
    """K = size - 1 clients over 480 training samples: equal n_k = 480 / K, and batch = n_k (one local step)."""
    k = MPI.COMM_WORLD.size - 1
    base = dict(strategy="fedavg", clients=k, fraction=1.0, rounds=4, local_epochs=1, synthetic_samples=600)
    cfg = make_cfg(tmp, **(base | kw))
    return dataclasses.replace(cfg, batch_size=480 // k)


def run_fedavg(cfg) -> Trainer:
    comm = MPI.COMM_WORLD
    run = setup.build(cfg, comm)
    attrs = {"strategy": "fedavg", "config": {}, "world_size": comm.size, "roles": []}
    loop = Trainer(run, comm, attrs, StopFlag())
    loop.train()
    comm.Barrier()
    return loop


def test_fedavg_equals_localsgd_tau1(shared_tmp):
    comm = MPI.COMM_WORLD
    if comm.size < 2:
        pytest.skip("an aggregator and a client rank")
    torch.set_num_threads(1)
    cfg = fed_cfg(shared_tmp)
    loop = run_fedavg(cfg)
    global_model = comm.bcast(loop.run.strategy.aggregator.values if comm.rank == 0 else None, root=0)
    sub = comm.Split(0 if comm.rank >= 1 else MPI.UNDEFINED, comm.rank)
    ok = True
    if sub != MPI.COMM_NULL:
        lcfg = dataclasses.replace(cfg, strategy="localsgd", local_steps=1, steps=cfg.rounds, out=cfg.out + ".l")
        run = setup.build(lcfg, sub)
        trainer = Trainer(run, sub, {"strategy": "localsgd", "config": {}, "world_size": sub.size}, StopFlag())
        for step in range(lcfg.steps):
            trainer.step(step, 0.0)
        local = torch.cat([p.detach().reshape(-1) for p in run.model.parameters()]).numpy()
        moved = not np.allclose(
            local,
            torch.cat(
                [
                    p.reshape(-1)
                    for p in setup.models.build(
                        cfg.model, run.dataset.shape, run.dataset.classes, cfg.seed
                    ).parameters()
                ]
            )
            .detach()
            .numpy(),
        )
        # Equal up to float32 sums in another order, which can flip a ReLU whose input is near zero: at 4 ranks
        # (this machine, 2026-12-05) 35 of 49,610 entries differed by up to 3.2e-5, the median by 3.7e-9. A wrong
        # average moves every entry; a flip moves a few.
        close = np.isclose(global_model, local, rtol=1e-4, atol=1e-5)
        ok = moved and close.mean() > 0.999 and np.abs(global_model - local).max() < 1e-3
        sub.Free()
    assert all_agree(ok), "fedavg (C=1, one local step, equal n_k) differs from localsgd tau=1"


def test_late_and_dropped_updates_are_recorded_and_excluded(shared_tmp):
    comm = MPI.COMM_WORLD
    if comm.size < 2:
        pytest.skip("an aggregator and a client rank")
    torch.set_num_threads(1)
    cfg = fed_cfg(shared_tmp, deadline=1e-9, out=f"{shared_tmp}/late.h5")
    loop = run_fedavg(cfg)
    ok, why = True, ""
    if comm.rank == 0:
        initial = torch.cat(
            [
                p.data.reshape(-1)
                for p in setup.models.build(
                    cfg.model, loop.run.dataset.shape, loop.run.dataset.classes, cfg.seed
                ).parameters()
            ]
        ).numpy()
        ok = np.array_equal(loop.run.strategy.aggregator.values, initial)  # every update came after the deadline
        with h5py.File(cfg.out) as f:
            k = comm.size - 1
            ok &= bool((f["fedavg/clients/status"][()] == 2).all()) and f["fedavg/late"][0].sum() == 4 * k
            ok &= f["fedavg/clients/round_number"].shape == (4 * k,) and f["fedavg/finished"][0].sum() == 0
        why = "late updates were averaged in or not recorded"
    assert all_agree(ok), why
    cfg = fed_cfg(shared_tmp, dropout=0.5, rounds=6, out=f"{shared_tmp}/drop.h5")
    run_fedavg(cfg)
    if comm.rank == 0:
        with h5py.File(cfg.out) as f:
            status = f["fedavg/clients/status"][()]
            sampled, fin, drop = (f[f"fedavg/{n}"][0] for n in ("sampled", "finished", "dropped"))
            ok = bool((sampled == fin + drop).all()) and int(drop.sum()) == int((status == 1).sum())
            ok &= int(drop.sum()) > 0 or comm.size == 2  # 6 rounds x K clients at P = 0.5
    assert all_agree(ok), "dropouts not recorded consistently"


def several_clients_per_host(tmp, **server):
    """3 clients per client rank, unequal n_k (Dirichlet), dropouts, FedProx, and the given FedOpt server."""
    if MPI.COMM_WORLD.size < 2:
        pytest.skip("an aggregator and a client rank")
    torch.set_num_threads(1)
    k = 3 * (MPI.COMM_WORLD.size - 1)
    base = fed_cfg(tmp, clients=k, fraction=0.7, dropout=0.2, fedprox_mu=0.1, partition="dirichlet")
    return dataclasses.replace(base, **server)


def global_model(cfg):
    """The aggregator's final global model (rank 0; None elsewhere)."""
    loop = run_fedavg(cfg)
    return loop.run.strategy.aggregator.values.copy() if MPI.COMM_WORLD.rank == 0 else None


def test_nonblocking_uploads_give_the_blocking_result_bit_for_bit(shared_tmp):
    """Several clients per host, dropouts, FedProx and a FedOpt server: the aggregator receives the same updates
    in the same order whether hosts send blocking or from upload buffers, so the global model is identical."""
    comm = MPI.COMM_WORLD
    base = several_clients_per_host(shared_tmp, server_opt="avgm", server_lr=0.7)
    values = [
        global_model(dataclasses.replace(base, upload_buffers=b, out=f"{shared_tmp}/up{b}.h5")) for b in (0, 1, 3)
    ]
    ok = comm.rank != 0 or all(np.array_equal(values[0], v) for v in values[1:])
    assert all_agree(ok), "upload buffers changed the global model"


@pytest.mark.parametrize("aggregation", ["host", "tree", "tree-nodes"])
def test_host_and_tree_aggregation_equal_per_client_streaming(shared_tmp, aggregation):
    """Partial sums per host (and pairwise in a tree) give the global model of per-client streaming, to float64
    rounding, with several clients per host, dropouts, FedProx and FedOpt; all-late rounds leave it unchanged.
    tree-nodes: on virtual nodes of 2 ranks, the tree goes through node leaders (a wrong edge leaves a report
    unreceived: the run hangs to the watchdog, or a client's records are missing)."""
    comm = MPI.COMM_WORLD
    base = several_clients_per_host(shared_tmp, server_opt="adam", server_lr=0.05)
    if aggregation == "tree-nodes":
        base, aggregation = dataclasses.replace(base, ranks_per_node=2), "tree"
    got = [
        global_model(dataclasses.replace(base, aggregation=m, out=f"{shared_tmp}/{m}.h5"))
        for m in ("client", aggregation)
    ]
    ok = comm.rank != 0 or np.allclose(got[0], got[1], rtol=1e-5, atol=1e-6)
    if comm.rank == 0:
        with h5py.File(f"{shared_tmp}/{aggregation}.h5") as f, h5py.File(f"{shared_tmp}/client.h5") as g:
            for name in ("client", "status", "samples", "host_rank"):
                a = np.sort(f[f"fedavg/clients/{name}"][()])
                ok &= np.array_equal(a, np.sort(g[f"fedavg/clients/{name}"][()]))
    assert all_agree(ok), f"{aggregation} aggregation differs from per-client streaming"
    late = dataclasses.replace(base, aggregation=aggregation, deadline=1e-9, dropout=0.0, out=f"{shared_tmp}/l.h5")
    loop = run_fedavg(late)
    ok = comm.rank != 0 or np.array_equal(loop.run.strategy.aggregator.values, loop.run.strategy.aggregator.snapshot)
    if comm.rank == 0:
        with h5py.File(late.out) as f:
            ok &= bool((f["fedavg/clients/status"][()] == 2).all()) and f["fedavg/finished"][0].sum() == 0
    assert all_agree(ok), "late clients were folded in"


@pytest.mark.parametrize("aggregation", ["client", "host"])
def test_balanced_placement_gives_the_static_model(shared_tmp, aggregation):
    """Which rank trains a client changes only the folding order: the same global model to float64 rounding."""
    comm = MPI.COMM_WORLD
    base = several_clients_per_host(shared_tmp, aggregation=aggregation)
    got = [
        global_model(dataclasses.replace(base, placement=p, out=f"{shared_tmp}/{p}.h5")) for p in ("static", "balanced")
    ]
    ok = comm.rank != 0 or np.allclose(got[0], got[1], rtol=1e-5, atol=1e-6)
    assert all_agree(ok), f"balanced placement changed the model ({aggregation})"


@pytest.mark.parametrize("buffers", [0, 2])
def test_lossless_compressed_uploads_give_the_uncompressed_global_model(shared_tmp, buffers):
    """topk:1 keeps every entry, so w + (w_k - w) = w_k up to float32 rounding of the subtraction and the
    addition: the compressed path (delta, one message per client, decoded onto the round's model) changes nothing
    else, with several clients per host, dropouts, FedProx and blocking or buffered uploads."""
    base = several_clients_per_host(shared_tmp, placement="static", upload_buffers=buffers)
    plain = global_model(dataclasses.replace(base, out=f"{shared_tmp}/plain.h5"))
    lossless = global_model(dataclasses.replace(base, compress="topk:1", out=f"{shared_tmp}/topk1.h5"))
    ok = MPI.COMM_WORLD.rank != 0 or np.allclose(plain, lossless, rtol=1e-5, atol=1e-6)
    assert all_agree(ok), "lossless compression changed the global model"


def test_a_compressed_delta_is_folded_onto_the_rounds_model(shared_tmp):
    """Serial reference with one sampled client: uncompressed, the global model after the round is the client's
    model w_1 itself; compressed with top-k (no error feedback), it must be w_0 + D(C(w_1 - w_0)), layer by layer."""
    from bench.compress import parse
    from bench.workload.models import flat_parameters

    comm = MPI.COMM_WORLD
    if comm.size < 2:
        pytest.skip("an aggregator and a client rank")
    torch.set_num_threads(1)
    k = comm.size - 1
    base = fed_cfg(shared_tmp, rounds=1, fraction=1.0 / k, placement="static")
    run = setup.build(base, comm)
    w0, sizes = flat_parameters(run.layers), [layer.numel for layer in run.layers]
    w1 = global_model(dataclasses.replace(base, out=f"{shared_tmp}/plain.h5"))
    compressed = global_model(
        dataclasses.replace(base, compress="topk:0.1", error_feedback="off", out=f"{shared_tmp}/c.h5")
    )
    ok = True
    if comm.rank == 0:
        topk, expected, at = parse("topk:0.1"), [], 0
        for n in sizes:
            delta = w1[at : at + n] - w0[at : at + n]
            expected.append(w0[at : at + n] + topk.decompress(topk.compress(delta), n))
            at += n
        ok = not np.array_equal(w1, compressed) and np.allclose(
            np.concatenate(expected), compressed, rtol=1e-6, atol=1e-7
        )
    assert all_agree(ok), "the aggregator did not fold w0 + decompressed delta"

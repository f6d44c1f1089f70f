"""FedLAMA at every rank count with a client rank: PHI = 1 is FedAvg with local steps bit for bit; with PHI = 2 the
global model equals a serial reference that keeps each cohort client's local layers between rounds (so the plan,
the selective download and upload, and the hosts' kept models are checked), and the recorded pattern follows the
intervals."""

import dataclasses

import h5py
import numpy as np
import pytest
import torch
from mpi4py import MPI

from bench.workload import data, models, partition
from tests.fedlama_reference import FedLamaReference
from tests.fl_reference import train_client

from .conftest import all_agree
from .test_fedavg import fed_cfg, global_model

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(240)]


def lama_cfg(tmp, **kw):
    if MPI.COMM_WORLD.size < 2:
        pytest.skip("an aggregator and a client rank")
    torch.set_num_threads(1)
    k = 4 * (MPI.COMM_WORLD.size - 1)
    base = dict(clients=k, fraction=0.5, rounds=6, local_steps=3, partition="dirichlet", model="cnn", lr=0.02)
    cfg = fed_cfg(tmp, **(base | {"fl_algorithm": "fedlama", "dataset": "digits"} | kw))
    return dataclasses.replace(cfg, batch_size=16)


def _flat(params) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in params]).numpy().copy()


def serial_fedlama(cfg, cohorts: list[list[int]]):
    """One process: FedLAMA's rounds (tests/fedlama_reference.py, the paper in plain numpy) on the cohorts the run
    recorded, with each cohort client's model kept between rounds of a block and the layers not sent this round
    taken from it (the same batches and optimizer as ClientHost.train). Returns the global model and the plan's
    averaged flags and intervals per round."""
    ds = data.load(cfg)
    model = models.build(cfg.model, ds.shape, ds.classes, cfg.seed)
    parts = partition.make(cfg.partition, ds.y_train, cfg.clients, cfg.seed, alpha=cfg.alpha, groups=ds.groups)
    layers = models.layers_of(model)
    params = [p for layer in layers for p in layer.params]  # the suite's flat layout
    x = _flat(params)
    offsets = np.cumsum([0] + [layer.numel for layer in layers])
    eligible = [any(p.dim() > 1 for p in layer.params) for layer in layers]
    ref = FedLamaReference(offsets, eligible, cfg.fedlama_phi, cfg.local_steps)
    kept: dict[int, np.ndarray] = {}
    averaged_by_round, intervals_by_round = [], []
    for r in range(cfg.rounds):
        fresh, averaged = ref.plan(r)
        averaged_by_round.append(averaged)
        intervals_by_round.append(list(ref.intervals))
        models_, weights = [], []
        for k in cohorts[r]:
            start = x.copy()
            if k in kept:
                for layer in np.flatnonzero(~np.array(fresh)):
                    start[offsets[layer] : offsets[layer + 1]] = kept[k][offsets[layer] : offsets[layer + 1]]
            models.load_flat(params, start)
            n = train_client(cfg, model, ds, parts[k], k, r)
            kept[k] = _flat(params)
            models_.append(kept[k])
            weights.append(float(n))
        ref.update(x, models_, weights, r)
    return x, np.array(averaged_by_round, dtype=np.int8), np.array(intervals_by_round)


def test_phi_one_is_fedavg_with_local_steps_bit_for_bit(shared_tmp):
    base = lama_cfg(shared_tmp, fedlama_phi=1, rounds=3)
    lama = global_model(dataclasses.replace(base, out=f"{shared_tmp}/l1.h5"))
    plain = global_model(dataclasses.replace(base, fl_algorithm="fedavg", out=f"{shared_tmp}/a.h5"))
    assert all_agree(MPI.COMM_WORLD.rank != 0 or np.array_equal(lama, plain)), "FedLAMA(PHI=1) is not FedAvg(T)"


def test_layers_kept_local_match_a_serial_reference_and_the_record(shared_tmp):
    cfg = lama_cfg(shared_tmp, out=f"{shared_tmp}/l2.h5")
    got = global_model(cfg)
    ok = True
    if MPI.COMM_WORLD.rank == 0:
        with h5py.File(cfg.out) as f:
            averaged, interval = f["fedlama/averaged"][0], f["fedlama/interval"][0]
            rounds, clients = f["fedavg/clients/round_number"][()], f["fedavg/clients/client"][()]
            up = f["timing/comm_bytes"][1:].sum(axis=(0, 2))
        first = 1  # round numbers count from 1 in the file
        cohorts = [sorted(int(k) for k in clients[rounds == first + r]) for r in range(cfg.rounds)]
        expected, expected_averaged, expected_interval = serial_fedlama(cfg, cohorts)
        ok = np.allclose(got, expected, rtol=1e-4, atol=1e-5)
        ok &= np.array_equal(averaged, expected_averaged) and np.array_equal(interval, expected_interval)
        ok &= bool((averaged == 0).any())  # some layer was kept local in some round
        same_cohort = [set(clients[rounds == b]) == set(clients[rounds == b + 1]) for b in range(1, cfg.rounds + 1, 2)]
        ok &= all(same_cohort)
        ok &= bool(up[averaged.all(axis=1)].min() > up[~averaged.all(axis=1)].max())  # fewer bytes when kept
    assert all_agree(ok), "FedLAMA's distributed rounds differ from the serial reference or its record"

"""The federated algorithms of issue 17 against oracles, at every rank count with a client rank: FedNova with equal
local steps and plain SGD is FedAvg; SCAFFOLD's first round is FedAvg's and its server variate the closed form;
``--local-steps T`` with one batch per epoch is ``--local-epochs T``; Multi-Krum over the whole cohort and a
0-trimmed mean are the plain mean; attackers are recorded."""

import dataclasses

import h5py
import numpy as np
import pytest
import torch
from mpi4py import MPI

from bench import setup
from bench.workload.models import flat_parameters
from tests.fl_reference import cohorts_from_file, serial_rounds

from .conftest import all_agree
from .test_fedavg import fed_cfg, global_model, several_clients_per_host

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(240)]


def two_clients_per_host(tmp, per_host=2, **kw):
    """``per_host`` clients per client rank, all sampled, equal n_k (iid), one local batch per epoch, plain SGD."""
    if MPI.COMM_WORLD.size < 2:
        pytest.skip("an aggregator and a client rank")
    torch.set_num_threads(1)
    k = per_host * (MPI.COMM_WORLD.size - 1)
    return fed_cfg(tmp, **({"clients": k, "rounds": 2} | kw))


def models(base, tmp, variants: dict) -> dict:
    return {
        name: global_model(dataclasses.replace(base, out=f"{tmp}/{name}.h5", **kw)) for name, kw in variants.items()
    }


def test_fednova_with_equal_steps_and_plain_sgd_is_fedavg(shared_tmp):
    """One round: the two differ by float rounding only (x - tau (x / tau - sum p_i y_i / tau) against the
    mean). Over more rounds this problem amplifies one float32 ulp of the global model: moving FedAvg's round-1
    model up by one ulp moved its round-2 model by 3.2e-5 (measured), so later rounds are no test of equality."""
    base = two_clients_per_host(shared_tmp, local_epochs=3, rounds=1)
    got = models(base, shared_tmp, {"fedavg": {}, "fednova": {"fl_algorithm": "fednova"}})
    ok = MPI.COMM_WORLD.rank != 0 or np.allclose(got["fedavg"], got["fednova"], rtol=1e-6, atol=1e-7)
    assert all_agree(ok), "FedNova with equal local steps differs from FedAvg"


def test_fednova_normalises_unequal_steps(shared_tmp):
    """Unequal n_k (Dirichlet) give unequal step counts: two rounds of FedNova against the paper's update written
    out serially (tests/fl_reference.py), on the cohorts the run recorded; and not FedAvg's model (a FedNova that
    ignored its normaliser would pass the test above). float32 against float64 over two rounds: rtol 1e-4."""
    base = several_clients_per_host(shared_tmp, dropout=0.0, fedprox_mu=0.0)
    base = dataclasses.replace(base, batch_size=8, rounds=2)
    got = models(base, shared_tmp, {"fedavg": {}, "fednova": {"fl_algorithm": "fednova"}})
    ok = True
    if MPI.COMM_WORLD.rank == 0:
        cohorts = cohorts_from_file(f"{shared_tmp}/fednova.h5", base.rounds)
        expected = serial_rounds(base, cohorts, "fednova")
        ok = np.allclose(got["fednova"], expected, rtol=1e-4, atol=1e-5)
        ok &= not np.allclose(got["fedavg"], got["fednova"], rtol=1e-4, atol=1e-5)
    assert all_agree(ok), "FedNova's rounds differ from the paper's update"


def test_scaffold_first_round_is_fedavg_and_its_variate_the_closed_form(shared_tmp):
    """Round 1 from zero variates with eta_g = 1 and equal n_k is FedAvg; then c = (1/N) sum_i (x0 - y_i)/(K eta)
    = (x0 - x1) / (K eta) when every client takes part (x1 = mean y_i). Round 2 uses the variates: not FedAvg."""
    comm = MPI.COMM_WORLD
    base = two_clients_per_host(shared_tmp, rounds=1, local_epochs=2, placement="static")
    x0 = flat_parameters(setup.build(base, comm).layers)
    fedavg = global_model(dataclasses.replace(base, out=f"{shared_tmp}/a.h5"))
    loop_cfg = dataclasses.replace(base, fl_algorithm="scaffold", out=f"{shared_tmp}/s.h5")
    from .test_fedavg import run_fedavg

    loop = run_fedavg(loop_cfg)
    ok = True
    if comm.rank == 0:
        x1, c = loop.run.strategy.aggregator.values, loop.run.strategy.algorithm.c
        ok = np.allclose(x1, fedavg, rtol=1e-5, atol=1e-6)
        ok &= np.allclose(c, (x0 - x1) / (2 * base.lr), rtol=1e-3, atol=1e-4) and np.abs(c).max() > 0
    assert all_agree(ok), "SCAFFOLD's first round or its server variate is wrong"
    later = dataclasses.replace(base, rounds=3, server_lr=0.8)
    three = models(later, shared_tmp, {"a": {}, "s": {"fl_algorithm": "scaffold"}})
    ok = True
    if comm.rank == 0:  # rounds 2-3 use the variates: against option II written out serially
        expected = serial_rounds(later, cohorts_from_file(f"{shared_tmp}/s.h5", later.rounds), "scaffold")
        ok = np.allclose(three["s"], expected, rtol=1e-4, atol=1e-5)
        ok &= not np.allclose(three["a"], three["s"], rtol=1e-4, atol=1e-5)
    assert all_agree(ok), "SCAFFOLD's later rounds differ from the paper's algorithm"


@pytest.mark.parametrize("deadline", [float("inf"), 1e-9], ids=["on-time", "all-late"])
def test_scaffold_server_variate_is_the_mean_of_the_client_variates(shared_tmp, deadline):
    """c = (1/N) sum_i c_i over all N clients after every round (the hosts keep c_i), also when every update is
    late: the models stay out, the variates' changes may not (a server that dropped them drifted from its
    clients' variates)."""
    comm = MPI.COMM_WORLD
    base = two_clients_per_host(shared_tmp, rounds=2, local_epochs=2, placement="static")
    cfg = dataclasses.replace(base, fl_algorithm="scaffold", deadline=deadline, out=f"{shared_tmp}/v.h5")
    from .test_fedavg import run_fedavg

    algorithm = run_fedavg(cfg).run.strategy.algorithm
    variates = comm.gather(dict(algorithm.client_variates), root=0)
    ok = True
    if comm.rank == 0:
        every = {k: v for host in variates for k, v in host.items()}
        mean = sum(every.values()) / cfg.clients
        ok = len(every) == cfg.clients and np.abs(mean).max() > 0 and np.allclose(algorithm.c, mean, atol=1e-6)
    assert all_agree(ok), "SCAFFOLD's server variate is not the mean of its clients' variates"


def test_local_steps_cycle_epochs(shared_tmp):
    """With batch = n_k every epoch is one step, so T local steps are T epochs, bit for bit."""
    base = two_clients_per_host(shared_tmp)
    got = models(base, shared_tmp, {"epochs": {"local_epochs": 3}, "steps": {"local_steps": 3}})
    ok = MPI.COMM_WORLD.rank != 0 or np.array_equal(got["epochs"], got["steps"])
    assert all_agree(ok), "--local-steps 3 differs from --local-epochs 3 with one batch per epoch"


def test_whole_cohort_multikrum_and_untrimmed_mean_are_the_mean(shared_tmp):
    base = two_clients_per_host(shared_tmp, per_host=4, rounds=1)  # equal n_k (480 / K); Krum needs 3
    m = base.clients
    variants = {"mean": {}, "multikrum": {"aggregator": f"multikrum:0:{m}"}, "trimmed": {"aggregator": "trimmed:0"}}
    variants["krum"] = {"aggregator": "krum:0"}
    got = models(base, shared_tmp, variants)
    ok = True
    if MPI.COMM_WORLD.rank == 0:
        ok = np.allclose(got["mean"], got["multikrum"], rtol=1e-5, atol=1e-6)
        ok &= np.allclose(got["mean"], got["trimmed"], rtol=1e-5, atol=1e-6)
        ok &= not np.allclose(got["mean"], got["krum"], rtol=1e-4, atol=1e-5)
    assert all_agree(ok), "robust rules over the whole cohort differ from the mean"


def test_attackers_are_recorded_and_a_unit_scale_attack_changes_nothing(shared_tmp):
    """x + 1 (y - x) is y up to float32 rounding; compared after one round (see the FedNova test for why)."""
    base = two_clients_per_host(shared_tmp, rounds=1)
    attack = {"byzantine": "0.5:sign-flip", "rounds": 3}
    got = models(base, shared_tmp, {"honest": {}, "unit": {"byzantine": "1:scale:1"}, "flip": attack})
    ok = True
    if MPI.COMM_WORLD.rank == 0:
        ok = np.allclose(got["honest"], got["unit"], rtol=1e-5, atol=1e-6)
        ok &= not np.allclose(got["honest"], got["flip"], rtol=1e-3, atol=1e-4)
        with h5py.File(f"{shared_tmp}/flip.h5") as f:
            flags, rounds = f["fedavg/clients/byzantine"][()], f["fedavg/clients/round_number"][()]
        ok &= all(int(flags[rounds == r].sum()) == round(0.5 * base.clients) for r in (1, 2, 3))
    assert all_agree(ok), "attack not applied or not recorded"


def test_power_of_choice_trains_the_candidates_with_the_highest_loss(shared_tmp):
    """Round 0's chosen clients against a serial reference: every candidate's mean loss on the initial model,
    the m highest kept; host-side aggregation of the chosen gives the per-client model."""
    from bench.strategies.fedavg.choice import local_loss
    from bench.strategies.fedavg.sampling import highest_losses, sample_candidates
    from bench.workload import data, partition
    from bench.workload import models as zoo

    base = two_clients_per_host(shared_tmp, per_host=4, rounds=1, fraction=0.25, partition="dirichlet")
    d = base.clients // 2
    base = dataclasses.replace(base, selection=f"power-of-choice:{d}")
    got = models(base, shared_tmp, {"client": {}, "host": {"aggregation": "host"}})
    ok = True
    if MPI.COMM_WORLD.rank == 0:
        ds = data.load(base)
        model = zoo.build(base.model, ds.shape, ds.classes, base.seed)
        parts = partition.make(base.partition, ds.y_train, base.clients, base.seed, alpha=base.alpha, groups=ds.groups)
        candidates = sample_candidates(base.seed, 0, [len(p) for p in parts], d)
        losses = {
            int(k): local_loss(
                model, torch.from_numpy(ds.x_train[parts[k]]), torch.from_numpy(ds.y_train[parts[k]]), 32
            )
            for k in candidates
        }
        expected = highest_losses(losses, max(1, round(0.25 * base.clients)))
        with h5py.File(f"{shared_tmp}/client.h5") as f:
            trained = sorted(int(k) for k in f["fedavg/clients/client"][()])
            ok = trained == expected and int(f["fedavg/candidates"][0, 0]) == d
        ok &= np.allclose(got["client"], got["host"], rtol=1e-5, atol=1e-6)
    assert all_agree(ok), "power-of-choice did not train the highest-loss candidates"


def test_feddyn_rounds_are_algorithm_one_and_h_the_mean_of_the_client_states(shared_tmp):
    """Three rounds of FedDyn, half the clients sampled each round (so 1/m and 1/|P_t| differ), against Algorithm 1
    of Acar et al. 2021 written out serially (tests/fl_reference.py, which adds the regulariser's gradient by hand
    instead of differentiating it); then, with every update late, h = (1/m) sum_k g_k still (the hosts changed
    g_k, so the server counts their moves)."""
    comm = MPI.COMM_WORLD
    base = two_clients_per_host(shared_tmp, rounds=3, local_epochs=2, placement="static", fraction=0.5)
    cfg = dataclasses.replace(base, fl_algorithm="feddyn", feddyn_alpha=0.1, out=f"{shared_tmp}/d.h5")
    got = global_model(cfg)
    ok = True
    if comm.rank == 0:
        expected = serial_rounds(cfg, cohorts_from_file(cfg.out, cfg.rounds), "feddyn")
        plain = serial_rounds(cfg, cohorts_from_file(cfg.out, cfg.rounds), "fedavg")
        ok = np.allclose(got, expected, rtol=1e-4, atol=1e-5) and not np.allclose(got, plain, rtol=1e-4, atol=1e-5)
    assert all_agree(ok), "FedDyn's rounds differ from the paper's Algorithm 1"
    from .test_fedavg import run_fedavg

    late = dataclasses.replace(cfg, rounds=2, deadline=1e-9, out=f"{shared_tmp}/dl.h5")
    algorithm = run_fedavg(late).run.strategy.algorithm
    states = comm.gather(dict(algorithm.client_grads), root=0)
    ok = True
    if comm.rank == 0:
        every = {k: v for host in states for k, v in host.items()}
        mean = sum(every.values()) / late.clients
        ok = bool(every) and np.abs(mean).max() > 0 and np.allclose(algorithm.h, mean, atol=1e-6)
    assert all_agree(ok), "FedDyn's h is not the mean of its clients' gradient states"

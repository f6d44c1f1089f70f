"""Heterogeneous clients (issue 32) against oracles at every rank count with a client rank: layer-wise partial
training (``--fl-algorithm partial``) and width-reduced sub-models (``width``) are FedAvg bit for bit with every
client strong; with strong, moderate and weak clients they are the InclusiveFL and HeteroFL updates written out
serially (tests/fl_reference.serial_partial, serial_width), on the cohorts and tiers the run recorded; and the
file's per-client records say what each tier trained and sent."""

import dataclasses
import json

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from tests.fl_reference import cohorts_from_file, serial_partial, serial_width

from .conftest import all_agree
from .test_fedavg import global_model, several_clients_per_host

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(240)]
AT_3 = pytest.mark.skipif(MPI.COMM_WORLD.size != 3, reason="what is recorded does not depend on the rank count: 3")

FROZEN = {"strong": 0, "moderate": 1, "weak": 2}  # of mlp's three layers (fc1, fc2, fc3)
TIERS = dict(client_tiers="strong:0.34,moderate:0.33,weak:0.33", tier_frozen="moderate:1,weak:2")


def partial_cfg(tmp, **kw):
    """Several clients per host with unequal n_k (Dirichlet), plain SGD with momentum, no dropouts or FedProx."""
    base = several_clients_per_host(tmp, dropout=0.0, fedprox_mu=0.0)
    return dataclasses.replace(base, batch_size=8, rounds=2, momentum=0.9, **kw)


@pytest.mark.parametrize("algorithm", ["partial", "width"])
def test_every_client_strong_is_fedavg_bit_for_bit(shared_tmp, algorithm):
    """Mutations caught: a layer divided by another layer's weight, the mean's float64 sum taken in float32."""
    base = partial_cfg(shared_tmp)
    fedavg = global_model(dataclasses.replace(base, out=f"{shared_tmp}/a.h5"))
    strong = dataclasses.replace(base, fl_algorithm=algorithm, client_tiers="strong:1", out=f"{shared_tmp}/p.h5")
    got = global_model(strong)
    assert all_agree(MPI.COMM_WORLD.rank != 0 or np.array_equal(fedavg, got)), f"all-strong {algorithm} != FedAvg"


def test_tiers_train_their_layers_as_the_serial_update(shared_tmp):
    """Two rounds against the serial InclusiveFL update; not FedAvg's model. Mutations caught: frozen layers still
    trained (or uploaded and averaged in), a layer averaged over every client instead of its trainers, a layer
    nobody trained reset instead of kept, the frozen prefix one layer short."""
    base = partial_cfg(shared_tmp, fl_algorithm="partial", **TIERS)
    got = global_model(base)
    fedavg = global_model(dataclasses.replace(base, fl_algorithm="fedavg", client_tiers="", tier_frozen="",
                                              out=f"{shared_tmp}/a.h5"))  # fmt: skip
    ok = True
    if MPI.COMM_WORLD.rank == 0:
        with h5py.File(base.out) as f:
            tier_of = json.loads(f.attrs["client_tiers"])["tier_of_client"]
        frozen = [FROZEN[name] for name in ("strong", "moderate", "weak")]
        cohorts = cohorts_from_file(base.out, base.rounds)
        expected = serial_partial(base, cohorts, {k: frozen[t] for k, t in enumerate(tier_of)})
        ok = np.allclose(got, expected, rtol=1e-5, atol=1e-6)
        ok &= not np.allclose(got, fedavg, rtol=1e-3, atol=1e-4)
        ok &= len(set(tier_of)) == 3  # every tier has clients
    assert all_agree(ok), "partial training differs from the serial InclusiveFL update"


@AT_3
def test_the_file_records_each_clients_tier_phases_and_upload(shared_tmp):
    """Per logged client: its tier (as the assignment in ``client_tiers``), the bytes of the layers its tier trains
    (from ``layers/bytes``, summed by hand here), and forward and backward seconds within its training time.
    Mutations caught: every client's full model counted as sent, the tier column read by row instead of by client."""
    base = partial_cfg(shared_tmp, fl_algorithm="partial", **TIERS)
    global_model(base)
    ok = True
    if MPI.COMM_WORLD.rank == 0:
        with h5py.File(base.out) as f:
            tiers = json.loads(f.attrs["client_tiers"])
            got = {n: f[f"fedavg/clients/{n}"][()] for n in ("client", "tier", "upload_bytes", "train_s",
                                                           "forward_s", "backward_s")}  # fmt: skip
            layer_bytes = f["layers/bytes"][()]
        expected_tier = np.array(tiers["tier_of_client"])[got["client"].astype(int)]
        sent = {0: layer_bytes.sum(), 1: layer_bytes[1:].sum(), 2: layer_bytes[2:].sum()}
        ok = np.array_equal(got["tier"], expected_tier)
        ok &= np.array_equal(got["upload_bytes"], [sent[t] for t in got["tier"]])
        ok &= bool((got["forward_s"] > 0).all() and (got["forward_s"] + got["backward_s"] <= got["train_s"]).all())
        ok &= [tiers[n]["frozen_layers"] for n in ("strong", "moderate", "weak")] == [0, 1, 2]
    assert all_agree(ok), "the per-client tier records are wrong"


def test_width_tiers_train_sub_models_as_the_serial_heterofl_update(shared_tmp):
    """Two rounds against the serial HeteroFL update, each tier at the width ratio r = sqrt(p), p the share of mlp's
    parameters its --tier-frozen layers leave to train (computed here from the layer sizes); and not FedAvg's model.
    Mutations caught: a sub-model loaded from the wrong slices, entries averaged over clients that do not hold
    them, entries nobody holds reset, r = p instead of sqrt(p)."""
    base = partial_cfg(shared_tmp, fl_algorithm="width", **TIERS)
    got = global_model(base)
    ok = True
    if MPI.COMM_WORLD.rank == 0:
        with h5py.File(base.out) as f:
            tiers = json.loads(f.attrs["client_tiers"])
            layer_size = f["layers/bytes"][()] / 4
        names = ("strong", "moderate", "weak")
        widths = [np.sqrt(layer_size[FROZEN[n] :].sum() / layer_size.sum()) for n in names]
        ok = np.allclose([tiers[n]["width"] for n in names], widths, rtol=1e-12)
        width_of = {k: widths[t] for k, t in enumerate(tiers["tier_of_client"])}
        expected = serial_width(base, cohorts_from_file(base.out, base.rounds), width_of)
        ok &= np.allclose(got, expected, rtol=1e-5, atol=1e-6)
        fedavg = serial_width(base, cohorts_from_file(base.out, base.rounds), dict.fromkeys(width_of, 1.0))
        ok &= not np.allclose(got, fedavg, rtol=1e-3, atol=1e-4)
    assert all_agree(ok), "width reduction differs from the serial HeteroFL update"


@AT_3
def test_partition_over_n_gives_the_first_k_parts_of_n(shared_tmp):
    """--partition-over N with K clients: client k holds the data it holds in a run with N clients (its samples'
    labels and count, from the run's own data and parts), so more clients bring more data."""
    from bench import setup

    base = partial_cfg(shared_tmp)
    k = base.clients
    few = setup.build(dataclasses.replace(base, partition_over=2 * k), MPI.COMM_WORLD)
    many = setup.build(dataclasses.replace(base, clients=2 * k), MPI.COMM_WORLD)
    ok = len(few.parts) == k and all(np.array_equal(a, b) for a, b in zip(few.parts, many.parts[:k]))
    assert all_agree(ok), "--partition-over did not give the first K of N parts"


@AT_3
def test_a_tiers_speed_factor_is_injected_on_its_clients_only(shared_tmp):
    """--tier-speed weak:3: a weak client's compute is made to take 3 x as long, the added 2 x train_s recorded as
    injected_s; strong clients get none (no --client-speed). Mutations caught: the factor applied to every tier,
    the factor itself injected instead of factor - 1."""
    base = partial_cfg(shared_tmp, fl_algorithm="partial", tier_speed="weak:3", **TIERS)
    global_model(base)
    ok = True
    if MPI.COMM_WORLD.rank == 0:
        with h5py.File(base.out) as f:
            tier, train, injected = (f[f"fedavg/clients/{n}"][()] for n in ("tier", "train_s", "injected_s"))
        ok = np.allclose(injected[tier == 2], 2 * train[tier == 2], rtol=1e-9) and not injected[tier != 2].any()
        ok &= bool((tier == 2).any())
    assert all_agree(ok), "the tier's speed factor was not injected as (factor - 1) x compute"

"""FedLAMA's pure parts: the interval rule on hand-made discrepancies (Lee et al., arXiv 2110.10302, Algorithm 1),
the streamed discrepancy against a direct computation, and the round plan."""

import numpy as np

from bench.strategies.fedavg.fedlama import DiscrepancySum, FedLama, choose_intervals
from bench.strategies.fedavg.sampling import sample_clients
from tests.fl_config import fl_config


def test_interval_rule_walks_by_discrepancy_until_the_size_share_is_overtaken():
    d = np.array([4.0, 1.0, 2.0, 8.0])
    dims = np.array([10.0, 40.0, 30.0, 20.0])
    # d dim = 40, 40, 60, 160 (total 300); by d: layer 1 (delta 40/300 = .133, lambda .4: 1 - .4 = .6 >= .133),
    # layer 2 (delta .333, lambda .7: .3 < .333: stop, included) -> layers 1 and 2 get PHI
    assert choose_intervals(d, dims, np.ones(4, bool), 3).tolist() == [1, 3, 3, 1]
    assert choose_intervals(d, dims, np.ones(4, bool), 3).dtype == np.int64
    # layer 1 not eligible (all-vector): walk 2 (delta .2, lambda .3: .7 >= .2), 0 (delta .333, lambda .4: .6),
    # 3 (delta .867, lambda .6: .4 < .867: stop, included)
    eligible = np.array([True, False, True, True])
    assert choose_intervals(d, dims, eligible, 2).tolist() == [2, 1, 2, 2]
    assert choose_intervals(d, dims, np.ones(4, bool), 1).tolist() == [1, 1, 1, 1]
    assert choose_intervals(np.zeros(4), dims, np.ones(4, bool), 2).tolist() == [1, 1, 1, 1]
    # a tie: after the first layer 1 - lambda = delta = 0.5, which does not stop the walk (the rule is strict)
    assert choose_intervals(np.ones(2), np.ones(2), np.ones(2, bool), 2).tolist() == [2, 2]


def test_streamed_discrepancy_equals_the_direct_mean_squared_distance():
    rng = np.random.default_rng(0)
    offsets = np.array([0, 3, 10, 12])
    clients = [rng.standard_normal(12).astype(np.float32) for _ in range(5)]
    weights = [1.0, 2.0, 3.0, 4.0, 5.0]
    agg = DiscrepancySum(12, offsets)
    for x, w in zip(clients, weights):
        agg.add(x, w)
    u = agg.total / agg.weight
    direct = [
        np.mean([np.sum((u[lo:hi] - c[lo:hi].astype(np.float64)) ** 2) for c in clients])
        for lo, hi in zip(offsets[:-1], offsets[1:])
    ]
    assert np.allclose(agg.distances(u), direct, rtol=1e-10)
    agg.reset()
    assert agg.count == 0 and not agg.plain.any() and not agg.squares.any()


def test_round_plan_and_cohort_blocks():
    cfg = fl_config(aggregator="mean", selection="uniform", fedlama_phi=2, seed=1, clients=20,
                                fraction=0.25, local_steps=4)  # fmt: skip
    alg = FedLama(cfg, 12, [5] * 20)
    alg.set_layers(np.array([0, 3, 10, 12]), [True, True, False])
    alg.intervals = np.array([2, 1, 1])
    fresh, averaged = alg.round_plan(4)  # a block's first round: everything sent, layer 0 stays local at its end
    assert fresh.all() and averaged.tolist() == [False, True, True]
    fresh, averaged = alg.round_plan(5)  # its second round: layer 0 not sent, everything averaged at its end
    assert fresh.tolist() == [False, True, True] and averaged.all()
    assert np.array_equal(alg.configure_round(4), alg.configure_round(5))
    assert not np.array_equal(alg.configure_round(5), alg.configure_round(6))
    # the cohort of a block is FedAvg's sample at the block's first round (the seeded draw is an input here)
    assert np.array_equal(alg.configure_round(5), sample_clients(1, 4, 20, 0.25))
    assert fresh.dtype == bool and averaged.dtype == bool


def test_without_layers_the_whole_model_is_one_layer():
    """Before set_layers (e.g. bench.perf.fedavg_round): one layer of every entry, eligible, interval 1; after a
    block of PHI = 2 it gets PHI (the only eligible layer holds the whole discrepancy) and stays local in round 2."""
    cfg = fl_config(aggregator="mean", selection="uniform", fedlama_phi=2, seed=0, clients=2,
                                fraction=1.0, local_steps=1)  # fmt: skip
    alg = FedLama(cfg, 3, [1, 1])
    assert alg.last == {}
    x = np.zeros(3, np.float32)
    for r in range(2):
        aggregate = alg.new_aggregate()
        aggregate.add(np.array([1.0, 2.0, 3.0], np.float32), 1.0)
        aggregate.add(np.array([3.0, 2.0, 1.0], np.float32), 1.0)
        alg.server_update(x, aggregate, r)
        assert x.tolist() == [2.0, 2.0, 2.0]
        assert alg.last["averaged"].dtype == np.int8 and alg.last["averaged"].tolist() == [1]
    assert alg.last["interval"].tolist() == [1] and alg.intervals.tolist() == [2]
    assert alg.intervals.dtype == np.int64  # recorded as integers (fedlama/interval)
    assert alg.round_plan(2)[1].tolist() == [False]


def test_server_rounds_match_the_paper_written_out_in_numpy():
    """Six rounds at PHI = 3 with four clients whose layers spread by different amounts: FedLama's plan, averaged
    layers, recorded discrepancies, intervals and global model against tests/fedlama_reference.py (Algorithm 1 in
    plain numpy). The second block runs with the intervals the first chose, so a wrong discrepancy (a missing
    I_l, tau' or dim_l), a wrong walk or a wrong modulus changes what is averaged."""
    from tests.fedlama_reference import FedLamaReference

    offsets, eligible = [0, 3, 10, 12, 20], [True, True, False, True]
    cfg = fl_config(aggregator="mean", selection="uniform", fedlama_phi=3, seed=0, clients=4,
                                fraction=1.0, local_steps=5)  # fmt: skip
    alg = FedLama(cfg, 20, [10, 20, 30, 40])
    alg.set_layers(np.array(offsets), eligible)
    ref = FedLamaReference(offsets, eligible, phi=3, tau=5)
    rng = np.random.default_rng(0)
    x, x_ref = np.zeros(20, np.float32), np.zeros(20)
    spread = np.repeat([0.01, 1.0, 0.5, 0.05], np.diff(offsets))
    weights = [10.0, 20.0, 30.0, 40.0]
    chose_phi = False
    for r in range(6):
        fresh, averaged = alg.round_plan(r)
        assert (fresh.tolist(), averaged.tolist()) == ref.plan(r), r
        clients = [(x_ref + spread * rng.standard_normal(20)).astype(np.float32) for _ in weights]
        aggregate = alg.new_aggregate()
        for c, w in zip(clients, weights):
            aggregate.add(c, w)
        alg.server_update(x, aggregate, r)
        d = ref.update(x_ref, clients, weights, r)
        assert np.allclose(x, x_ref, rtol=1e-6, atol=1e-7), r
        assert np.allclose(alg.last["discrepancy"], d, rtol=1e-9, equal_nan=True), r
        assert alg.last["averaged"].tolist() == [int(a) for a in averaged]
        assert alg.intervals.tolist() == ref.intervals, r
        chose_phi |= 3 in ref.intervals
    assert chose_phi  # the case is telling: some layer was given PHI


def test_set_layers_starts_every_interval_at_one_as_integers():
    cfg = fl_config(aggregator="mean", selection="uniform", fedlama_phi=2, seed=0, clients=2,
                                fraction=1.0, local_steps=1)  # fmt: skip
    alg = FedLama(cfg, 10, [1, 1])
    alg.set_layers([0, 4, 10], [True, False])
    assert alg.intervals.tolist() == [1, 1] and alg.intervals.dtype == np.int64 and alg.offsets.dtype == np.int64

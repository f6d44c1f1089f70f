"""The cost model: per-algorithm fits on synthetic data from the two-algorithm kernel (known alpha and beta),
closed-form predictions per strategy, the micro-file fit, the model table."""

import json
import math

import numpy as np
import pytest

from analysis.data.load import load
from analysis.models import costmodel, prediction
from analysis.views.model import fit_from_micro, model_table
from bench.measure import results
from kernels.reference import SMALL_BYTES
from tests.analysis_fixtures import ps_run, ring_run

SIZES = np.array([2**k for k in range(3, 25)], dtype=float)
ALPHA, BETA = 12e-6, 0.4e-9


def kernel_times(p: int, alpha: float = ALPHA, beta: float = BETA) -> np.ndarray:
    """What our kernel costs in the alpha-beta model: doubling below 128 KiB, ring from there (written out
    here, not through costmodel, so a wrong coefficient there cannot agree with itself)."""
    k = {2: 1, 3: 3, 4: 2, 8: 3}[p]  # log2 of the largest power of two <= p, + 2 when p is not one (Thakur et al.)
    ring = 2 * (p - 1) * alpha + 2 * (p - 1) / p * SIZES * beta
    return np.where(SIZES < 128 * 1024, k * (alpha + SIZES * beta), ring)  # the kernels' switch at 128 KiB


@pytest.mark.parametrize("p", [2, 3, 4, 8])
def test_two_algorithm_fit_recovers_alpha_and_beta(p):
    noise = np.random.default_rng(p).normal(1.0, 0.01, SIZES.size)
    fit = costmodel.fit_allreduce(SIZES, kernel_times(p) * noise, p)
    for name in ("ring", "doubling"):
        f = fit.algorithms[name]
        assert abs(f.alpha - ALPHA) / ALPHA < 0.1 and abs(f.beta - BETA) / BETA < 0.1, (name, f)
        assert f.alpha_se > 0 and f.beta_se > 0 and f.error < 0.03
    assert fit.algorithms["doubling"].hi_bytes < SMALL_BYTES <= fit.algorithms["ring"].lo_bytes


def test_one_formula_for_all_sizes_does_not_recover_them():
    """The bug this replaces: fitting the ring formula to every size. Its alpha is far off."""
    p, times = 4, kernel_times(4)
    a, b, *_ = costmodel.fit_weighted(np.full(SIZES.size, 2.0 * (p - 1)), 2.0 * (p - 1) / p * SIZES, times)
    assert abs(a - ALPHA) / ALPHA > 0.3
    exact = costmodel.fit_allreduce(SIZES, times, p)
    assert exact.algorithms["ring"].alpha == pytest.approx(ALPHA, rel=1e-6)


def test_fit_error_is_the_median_relative_error_of_its_own_points():
    n = np.array([8.0, 64.0, 512.0, 4096.0])
    t = 1e-6 + n * 1e-9
    t_off = t * np.array([1.0, 1.1, 1.0, 0.8])
    a, b, _, _, err = costmodel.fit_weighted(np.ones(4), n, t_off)
    expect = float(np.median(np.abs(a + b * n - t_off) / t_off))
    assert err == pytest.approx(expect) and err > 0


def test_predictions_choose_the_kernels_algorithm_per_buffer():
    fit = costmodel.Fit.given(2e-6, 1e-9)
    small, big = 1024.0, 4.0 * SMALL_BYTES
    assert costmodel.allreduce_time(small, 4096, fit) == pytest.approx(12 * (2e-6 + small * 1e-9))
    assert costmodel.allreduce_time(big, 4, fit) == pytest.approx(6 * 2e-6 + 1.5 * big * 1e-9)
    assert costmodel.allreduce_time(big, 1, fit) == 0.0


def test_strategy_communication_closed_forms(tmp_path):
    fit = costmodel.Fit.given(1e-6, 1e-9)
    ring = ring_run(tmp_path / "r.h5", 4, 0.1)  # two layers of 4000 bytes: doubling
    one = 2 * (2 * (1e-6 + 4000 * 1e-9))
    assert prediction.comm_per_step(ring, 4, fit) == pytest.approx(one)
    local = ring_run(tmp_path / "l.h5", 4, 0.1, strategy="localsgd", cfg={"local_steps": 4})
    assert prediction.comm_per_step(local, 4, fit) == pytest.approx(one / 4)  # catches: not divided by tau
    ps = ps_run(tmp_path / "p.h5", 2, 4, 0.1)
    assert prediction.comm_per_step(ps, 6, fit) == pytest.approx(2 * 4 * 2 * (1e-6 + 2000 * 1e-9))


def test_compute_per_step_is_everything_but_communication_and_wait(tmp_path):
    run = ring_run(tmp_path / "a.h5", 2, [1.0, 0.8], comm_s=0.3, wait_s=0.1, opt_s=0.2, fwd_s=0.1)
    assert prediction.compute_per_step(run) == pytest.approx(1.0 - 0.3 - 0.1)  # the slowest rank's local time


def test_predicted_speedup_counts_computing_ranks(tmp_path):
    fit = costmodel.Fit.given(0.0, 0.0)  # free communication: speedup = computing-rank ratio exactly
    ps = ps_run(tmp_path / "p.h5", 1, 2, 0.5)
    preds = prediction.predict(ps, fit, [3, 9])
    assert preds[1].speedup == pytest.approx(8 / 2)  # catches: world ranks (9 / 3)
    assert preds[0].step_s == pytest.approx(0.5)


def micro_file(path, p: int, wrong_ours: int | None = None):
    times = np.stack([kernel_times(p)] * 5, axis=1)
    data = {
        "micro/allreduce/ours/size_bytes": (SIZES.astype(np.int64), "bytes"),
        "micro/allreduce/ours/time_s": (times, "s"),
    }
    if wrong_ours is not None:  # and MPI's, correct, at twice the time
        data["micro/allreduce/ours/wrong"] = (np.full(len(SIZES), 0, np.int64), "elements")
        data["micro/allreduce/ours/wrong"][0][-1] = wrong_ours
        data["micro/allreduce/mpi/size_bytes"] = (SIZES.astype(np.int64), "bytes")
        data["micro/allreduce/mpi/time_s"] = (2 * times, "s")
        data["micro/allreduce/mpi/wrong"] = (np.zeros(len(SIZES), np.int64), "elements")
    results.write(str(path), {"kind": "micro", "op": "allreduce", "world_size": p}, data)
    return load(path)


def test_fit_from_micro_and_model_table(tmp_path):
    fit = fit_from_micro([micro_file(tmp_path / "m.h5", 2)])
    assert fit.algorithms["ring"].alpha == pytest.approx(ALPHA, rel=1e-6) and "m.h5" in fit.source
    run = ring_run(tmp_path / "r.h5", 2, 0.1, comm_s=0.0)
    table = model_table([run], fit, [16], warmup=1)
    measured, predicted, err = table.rows[0][3:6]
    expect = 0.1 + 2 * costmodel.allreduce_time(4000, 2, fit)
    assert measured == pytest.approx(0.1) and predicted == pytest.approx(expect)
    assert err == pytest.approx((expect - 0.1) / 0.1) and not table.rows[0][6]
    assert any("doubling" in n for n in table.notes) and any("ring" in n for n in table.notes)
    assert math.isfinite(table.rows[0][7])


@pytest.mark.parametrize("wrong", [0, 3])
def test_fit_passes_over_an_implementation_with_wrong_results(tmp_path, wrong):
    """#wrong above zero on any size: our kernel's times measure a wrong result, the fit takes MPI's."""
    fit = fit_from_micro([micro_file(tmp_path / "m.h5", 2, wrong_ours=wrong)])
    assert ("mpi all-reduce" if wrong else "ours all-reduce") in fit.source, fit.source


def test_compressed_ring_is_modelled_from_its_recorded_wire_plan(tmp_path):
    """Closed forms: an all-gathered payload costs (p - 1)(2 alpha + beta (payload + 8)); an all-reduced wire
    buffer what the uncompressed model charges for a buffer of that size."""
    fit = costmodel.Fit.given(1e-5, 1e-9)
    wire = [{"allgather_bytes": 800}, {"allreduce_bytes": [2000, 6000]}]
    info = {"strategy_info": {"compress_wire": wire, "buckets": [[1], [0]]}}
    run = ring_run(tmp_path / "c.h5", 4, 0.1, cfg={"compress": "topk:0.01"}, attrs=info)
    gathered = 3 * (2 * 1e-5 + 1e-9 * (800 + 8))
    reduced = costmodel.allreduce_time(2000, 8, fit) + costmodel.allreduce_time(6000, 8, fit)
    assert math.isclose(prediction.comm_per_step(run, 8, fit), 7 * (2 * 1e-5 + 1e-9 * 808) + reduced)
    assert math.isclose(
        prediction.comm_per_step(run, 4, fit), gathered + sum(costmodel.allreduce_time(n, 4, fit) for n in (2000, 6000))
    )
    dense = ring_run(tmp_path / "d.h5", 4, 0.1)
    assert prediction.comm_per_step(dense, 4, fit) != prediction.comm_per_step(run, 4, fit)


def test_unphysical_fits_and_oversubscribed_micro_runs_are_marked(tmp_path):
    """A negative per-byte time is no bandwidth (it printed "inf GB/s"); a fit from a microbenchmark with more busy
    threads than cores is the host's, and says so."""
    from analysis.models.costmodel import AlgorithmFit, Fit

    bad = AlgorithmFit(2e-6, -1e-10, 0.0, 0.0, 8, 1 << 20, 6, 0.1)
    good = AlgorithmFit(2e-6, 1e-10, 0.0, 0.0, 8, 1 << 20, 6, 0.1)
    assert not bad.physical and good.physical and not AlgorithmFit(-1e-6, 1e-10, 0, 0, 8, 16, 2, 0).physical
    lines = Fit({"ring": bad, "doubling": good}).describe()
    assert "no bandwidth: not physical" in lines[0] and "† a negative or non-finite alpha or beta" in lines[0]
    assert "(10.000 GB/s)" in lines[1] and "†" not in lines[1]
    path = tmp_path / "crowded.h5"
    micro_file(path, 2)
    import h5py

    with h5py.File(path, "a") as f:  # 2 ranks x 1 thread on a host of 1 core
        f.attrs["hosts"], f.attrs["cores_per_host"], f.attrs["threads_per_rank"] = json.dumps(["h", "h"]), 1, 1
    fit = fit_from_micro([load(path)])
    assert fit.oversubscribed and any(line.startswith("‡ fitted on an oversubscribed") for line in fit.describe())
    assert not fit_from_micro([micro_file(tmp_path / "calm.h5", 2)]).oversubscribed


def test_sizes_print_in_binary_units():
    from analysis.models.costmodel import _size

    assert [_size(n) for n in (8, 1023, 1024, 1536, 2**20, 3 * 2**20, math.inf)] == [
        "8 B", "1023 B", "1 KiB", "1.5 KiB", "1 MiB", "3 MiB", "inf"]  # fmt: skip


def test_fit_allreduce_edges_by_hand():
    """Two sizes on each algorithm are enough (exactly: t = 1 step x (alpha + n beta) for doubling at p = 2); one
    size gets no fit of its own and borrows the other's; p < 2 and no algorithm with two sizes are errors."""
    alpha, beta = 2e-6, 1e-9
    small = np.array([64.0, 1024.0])
    fit = costmodel.fit_allreduce(small, alpha + small * beta, 2)
    d = fit.algorithms["doubling"]
    assert d.alpha == pytest.approx(alpha, rel=1e-9) and d.beta == pytest.approx(beta, rel=1e-9)
    assert (d.lo_bytes, d.hi_bytes, d.points) == (64.0, 1024.0, 2) and "ring" not in fit.algorithms
    assert fit.params("ring") is d and fit.source == "all-reduce on 2 ranks"
    big = np.array([64.0, 1 << 20])  # one size on each side
    with pytest.raises(ValueError, match="^an all-reduce fit needs at least two sizes on one algorithm$"):
        costmodel.fit_allreduce(big, alpha + big * beta, 2)
    with pytest.raises(ValueError, match="^an all-reduce fit needs p >= 2$"):
        costmodel.fit_allreduce(small, alpha + small * beta, 1)
    three = np.array([64.0, 256.0, 1024.0])
    assert costmodel.fit_allreduce(three, alpha + three * beta, 2).algorithms["doubling"].points == 3


def test_predictions_of_each_strategy_by_hand(tmp_path):
    """alpha 10 us, beta 1 ns/B; 2 layers of 4000 B. localsgd with tau = 4: a quarter of the ring's all-reduces
    per step; ps with 2 servers at p = 5 (3 workers): 2 x 3 x 2 x (alpha + 2000 beta); fedavg: computing ranks
    p - 1. The prediction's fields: step = compute + communication, share = communication / step, speedup in
    computing ranks against the first rank count."""
    from analysis.models.costmodel import Fit
    from analysis.models.prediction import comm_per_step, computing_of, error_at_own_size, predict
    from tests.analysis_fixtures import fedavg_run, ps_run, write_run

    fit = Fit.given(1e-5, 1e-9)
    ring = ring_run(tmp_path / "r.h5", 2, 0.1, comm_s=0.02)
    ring_comm = 2 * (1e-5 + 4000e-9)  # p = 2: one doubling step per layer
    assert comm_per_step(ring, 2, fit) == pytest.approx(ring_comm)
    local = write_run(tmp_path / "l.h5", ["peer"] * 2, 0.1, strategy="localsgd", cfg={"local_steps": 4})
    assert comm_per_step(local, 2, fit) == pytest.approx(ring_comm / 4)
    ps = ps_run(tmp_path / "p.h5", 2, 3, 0.1)
    assert comm_per_step(ps, 5, fit) == pytest.approx(2 * 3 * 2 * (1e-5 + 2000e-9))
    assert computing_of(ps, 5) == 3 and computing_of(ring, 5) == 5
    fed = fedavg_run(tmp_path / "f.h5", 2, 4, [(0, 0, 10, 0)], [0.1, 0.1, 0.1], {"clients": 2})
    assert computing_of(fed, 5) == 4 and computing_of(fed, 1) == 1
    first, second = predict(ring, fit, [2, 4], 1)
    compute = 0.1 - 0.02
    assert first.ranks == 2 and first.step_s == pytest.approx(compute + ring_comm) and first.speedup == 1.0
    assert first.comm_s == pytest.approx(ring_comm) and first.share == pytest.approx(ring_comm / first.step_s)
    four = 2 * 2 * (1e-5 + 4000e-9)  # p = 4: two doubling steps per layer
    assert second.step_s == pytest.approx(compute + four)
    assert second.speedup == pytest.approx((4 / second.step_s) / (2 / first.step_s))
    measured, predicted, err = error_at_own_size(ring, fit, 1)
    assert (measured, predicted, err) == pytest.approx((0.1, compute + ring_comm, (compute + ring_comm - 0.1) / 0.1))


def test_weighted_fit_and_its_standard_errors_match_scipy_curve_fit():
    """scipy's curve_fit with sigma = t minimises the same relative residuals; with absolute_sigma=False its
    covariance is s^2 (J^T J)^-1, s^2 from the residuals over m - 2 degrees of freedom: an independent
    implementation of the errors the table prints."""
    from scipy.optimize import curve_fit

    rng = np.random.default_rng(3)
    a = np.array([1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0])
    b = np.array([8.0, 1e3, 4e4, 2e5, 1e6, 4e6, 1.6e7])
    t = (2e-6 * a + 1e-9 * b) * rng.normal(1.0, 0.05, a.size)
    alpha, beta, se_a, se_b, err = costmodel.fit_weighted(a, b, t)
    popt, pcov = curve_fit(lambda x, p0, p1: p0 * x[0] + p1 * x[1], np.stack([a, b]), t, p0=[1e-6, 1e-9], sigma=t)
    assert (alpha, beta) == pytest.approx(tuple(popt), rel=1e-6)
    assert (se_a, se_b) == pytest.approx(tuple(np.sqrt(np.diag(pcov))), rel=1e-5)
    assert err == pytest.approx(np.median(np.abs(alpha * a + beta * b - t) / t), rel=1e-12)
    two = costmodel.fit_weighted(a[:2], b[:2], t[:2])  # two points: an exact fit, no errors
    assert math.isnan(two[2]) and math.isnan(two[3])


def test_coefficients_of_each_call_by_hand():
    """ring: 2 (p - 1) latencies, 2 (p - 1) / p of the bytes; doubling at p = 6: 2 + 2 steps (4 ranks + fold);
    a point-to-point message: one of each; nothing to send: none."""
    assert costmodel.coefficients("ring", 4) == (6.0, 1.5)
    assert costmodel.coefficients("doubling", 6) == (4.0, 4.0)
    assert costmodel.coefficients("p2p", 8) == (1.0, 1.0) and costmodel.coefficients("none", 1) == (0.0, 0.0)


def test_fit_description_and_model_notes_as_printed():
    fit = costmodel.Fit.given(2e-6, 1e-10)
    assert fit.describe() == [
        "fitted from given (--alpha, --beta)",
        "ring: alpha = 2.00 us, beta = 0.1000 ns/B (10.000 GB/s), given",  # no fit: no error bars, no fit error
        "doubling: alpha = 2.00 us, beta = 0.1000 ns/B (10.000 GB/s), given",
    ]
    sizes = np.array([8.0, 1024.0, 65536.0])
    measured = costmodel.fit_p2p(sizes, 2e-6 + sizes * 1e-10)
    assert measured.describe()[1].endswith("range 8 B-64 KiB, 3 sizes, median fit error 0.0 %")
    assert costmodel.Fit({}).describe() == []
    assert fit.for_message(100).alpha == 2e-6 and fit.params("none").beta == 1e-10
    from analysis.views.model import costmodel_notes

    notes = costmodel_notes(fit)
    assert notes[:3] == fit.describe() and len(notes) == 8
    assert notes[3].startswith("predicted = measured time outside communication and waiting + modelled communication")
    assert notes[4].startswith("overlapped runs (ring --overlap, ddp): + only the communication the replayed bucket")
    assert notes[5].startswith("compressed runs (ring --compress): the wire sizes the run recorded")
    assert (
        notes[6] == "oversubscribed runs: the model has no term for waiting for a core; their error is not the model's"
    )
    assert (
        notes[7]
        == "FedAvg rounds are not predicted at scale: a host's share of the clients changes with the rank count"
    )


def test_fit_from_micro_takes_ours_then_mpis_then_a_ping_pong(tmp_path):
    """Our all-reduce over several sizes first; a file with one size of ours falls to MPI's; a ping-pong file
    gives a point-to-point fit named as such; a file of no usable series gives none."""
    ours = fit_from_micro([micro_file(tmp_path / "o.h5", 4)])
    assert ours.source == "o.h5: ours all-reduce on 4 ranks"
    one = {
        "micro/allreduce/ours/size_bytes": (np.array([8], np.int64), "bytes"),
        "micro/allreduce/ours/time_s": (np.ones((1, 3)), "s"),
        "micro/allreduce/mpi/size_bytes": (SIZES.astype(np.int64), "bytes"),
        "micro/allreduce/mpi/time_s": (np.stack([kernel_times(2)] * 3, axis=1), "s"),
    }
    results.write(str(tmp_path / "m.h5"), {"kind": "micro", "op": "allreduce", "world_size": 2}, one)
    assert fit_from_micro([load(tmp_path / "m.h5")]).source == "m.h5: mpi all-reduce on 2 ranks"
    ping = {
        "micro/latency/ours/size_bytes": (np.array([8, 1024, 65536], np.int64), "bytes"),
        "micro/latency/ours/time_s": (np.stack([2e-6 + np.array([8, 1024, 65536]) * 1e-10] * 3, axis=1), "s"),
    }
    results.write(str(tmp_path / "p.h5"), {"kind": "micro", "op": "latency", "world_size": 2}, ping)
    fit = fit_from_micro([load(tmp_path / "p.h5")])
    assert fit.source == "p.h5: ping-pong" and fit.algorithms["ring"].alpha == pytest.approx(2e-6, rel=1e-6)
    results.write(str(tmp_path / "n.h5"), {"kind": "micro", "op": "allreduce"}, {k: one[k] for k in list(one)[:2]})
    assert fit_from_micro([load(tmp_path / "n.h5")]) is None


def test_cost_model_edges_by_hand(tmp_path):
    """Two repeats give an interval (t(0.975, 1) = 12.7062 x s / sqrt(2)); one wrong element disqualifies a
    series; two sizes are enough for a fit; the first unusable file does not stop the search; all-reduce time uses
    each algorithm's own fit; a custom switch size decides which sizes each algorithm fits; a fit of large
    messages only has no doubling part; the message size picks the fit by the kernels' switch."""
    from analysis.models.costmodel import AlgorithmFit, Fit, allreduce_time
    from analysis.stats.intervals import estimate

    assert estimate([1.0, 3.0]).half == pytest.approx(12.7062047 * math.sqrt(2.0) / math.sqrt(2.0), rel=1e-6)
    assert fit_from_micro([micro_file(tmp_path / "w1.h5", 2, wrong_ours=1)]).source.endswith(
        "mpi all-reduce on 2 ranks"
    )
    two = {
        "micro/allreduce/ours/size_bytes": (np.array([1 << 20, 1 << 22], np.int64), "bytes"),
        "micro/allreduce/ours/time_s": (np.stack([kernel_times(2)[-2:]] * 3, axis=1), "s"),
    }
    results.write(str(tmp_path / "two.h5"), {"kind": "micro", "op": "allreduce", "world_size": 2}, two)
    useless = {"micro/allreduce/ours/size_bytes": (np.array([8], np.int64), "bytes"),
               "micro/allreduce/ours/time_s": (np.ones((1, 3)), "s")}  # fmt: skip
    results.write(str(tmp_path / "u.h5"), {"kind": "micro", "op": "allreduce", "world_size": 2}, useless)
    fit = fit_from_micro([load(tmp_path / "u.h5"), load(tmp_path / "two.h5")])
    assert fit.source.startswith("two.h5") and fit.algorithms["ring"].points == 2 and "doubling" not in fit.algorithms
    ring, doubling = AlgorithmFit(1e-5, 1e-9, 0, 0, 0, 0, 2, 0), AlgorithmFit(2e-6, 2e-9, 0, 0, 0, 0, 2, 0)
    both = Fit({"doubling": doubling, "ring": ring})
    assert both.for_message(1 << 20) is ring and both.for_message(1000) is doubling
    assert allreduce_time(1 << 20, 4, both) == pytest.approx(6 * 1e-5 + 1.5 * (1 << 20) * 1e-9)
    assert allreduce_time(1000, 4, both) == pytest.approx(2 * (2e-6 + 1000 * 2e-9))
    assert allreduce_time(1000, 1, both) == 0.0
    sizes = np.array([1024.0, 4096.0, 16384.0, 65536.0])
    custom = costmodel.fit_allreduce(sizes, 1e-6 + sizes * 1e-9, 2, small_bytes=8192)
    assert (custom.algorithms["doubling"].points, custom.algorithms["ring"].points) == (2, 2)


def test_cost_model_notes_and_warnings_in_full():
    """Read as a reviewer reads them: what a prediction adds up, how overlapped and compressed runs are modelled,
    and the two warnings (an oversubscribed microbenchmark; an unphysical fit)."""
    from analysis.models.costmodel import AlgorithmFit, Fit
    from analysis.views.model import costmodel_notes

    assert costmodel_notes(Fit.given(1e-6, 1e-9))[3:6] == [
        "predicted = measured time outside communication and waiting + modelled communication, each buffer with the "
        "algorithm our kernel runs at that p and size (analysis/models/costmodel.py); speedup: weak scaling "
        "against the run's own size, in computing ranks",
        "overlapped runs (ring --overlap, ddp): + only the communication the replayed bucket schedule leaves after the "
        "measured backward pass (analysis/models/overlap.py; assumes the communication has a core of its own)",
        "compressed runs (ring --compress): the wire sizes the run recorded (analysis/models/compress.py); compression "
        "time stays in the measured part and is not scaled with p",
    ]
    bad = Fit({"ring": AlgorithmFit(1e-6, -1e-9, 0, 0, 8, 16, 2, 0)})
    bad.oversubscribed = True
    assert bad.describe() == [
        "‡ fitted on an oversubscribed microbenchmark (more busy threads than cores): its times include waiting for "
        "a core, so alpha and beta are the host's, not the network's",
        "ring: alpha = 1.00 +- 0.00 us, beta = -1.0000 +- 0.0000 ns/B (no bandwidth: not physical), range 8 B-16 B, "
        "2 sizes, median fit error 0.0 % † a negative or non-finite alpha or beta: not a latency and bandwidth of any "
        "link (too few or too noisy sizes); predictions from it are not meaningful",
    ]

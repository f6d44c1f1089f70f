"""Issue 17's pure parts against closed forms: robust rules (and planted outliers on a quadratic problem), the
Byzantine attacks, size-proportional selection's frequencies, FedNova's normaliser and update, SCAFFOLD's hooks,
the local-step schedule and the usage checks."""

import types

import numpy as np
import pytest

from bench.strategies.fedavg import robust
from bench.strategies.fedavg.byzantine import parse_byzantine
from bench.strategies.fedavg.drift import NormalisedSum, fednova_normaliser
from bench.strategies.fedavg.local import local_batches
from bench.strategies.fedavg.sampling import highest_losses, sample_by_size, sample_candidates
from tests.fl_config import fl_config


def test_median_and_trimmed_mean_are_the_closed_forms():
    u = np.array([[1.0, 10.0], [2.0, -5.0], [3.0, 0.0], [100.0, 1.0], [4.0, 2.0]])
    assert np.array_equal(robust.coordinate_median(u), [3.0, 1.0])
    # beta 0.2 of 5: drop 1 largest and 1 smallest per coordinate
    assert np.allclose(robust.trimmed_mean(u, 0.2), [(2 + 3 + 4) / 3, (0 + 1 + 2) / 3])
    assert np.allclose(robust.trimmed_mean(u, 0.0), u.mean(axis=0))
    # beta 0.25 of 5: floor(1.25) = 1 dropped at each end (ceil would drop 2 and keep the median alone)
    assert np.allclose(robust.trimmed_mean(u, 0.25), [(2 + 3 + 4) / 3, (0 + 1 + 2) / 3])
    # beta 0.4 of 5: floor(2.0) = 2 at each end: the median alone
    assert np.array_equal(robust.trimmed_mean(u, 0.4), [3.0, 1.0])


def test_the_median_of_an_even_cohort_is_the_mean_of_the_middle_two():
    """Yin et al. 2018 use the median of the coordinate's values: for an even n the mean of the two middle ones
    (the lower or the upper middle value alone is a different rule)."""
    u = np.array([[1.0, -4.0], [7.0, 0.0], [3.0, 8.0], [100.0, -1.0]])
    assert np.array_equal(robust.coordinate_median(u), [(3.0 + 7.0) / 2, (-1.0 + 0.0) / 2])
    assert np.array_equal(robust.aggregate(robust.Rule("median"), u), [5.0, -0.5])
    assert np.array_equal(robust.aggregate(robust.Rule("mean"), u), [111.0 / 4, 3.0 / 4])


def test_krum_scores_are_sums_of_nearest_squared_distances():
    u = np.array([[0.0], [1.0], [3.0], [10.0]])
    # n = 4, f = 1: each update's n - f - 2 = 1 nearest other
    assert np.allclose(robust.krum_scores(u, 1), [1.0, 1.0, 4.0, 49.0])
    assert list(robust.krum_select(u, 1, 2)) == [0, 1]
    # f = 0: the n - 2 = 2 nearest others: 0 -> 1 + 9, 1 -> 1 + 4, 3 -> 4 + 9, 10 -> 49 + 81
    assert np.allclose(robust.krum_scores(u, 0), [10.0, 5.0, 13.0, 130.0])
    assert robust.aggregate(robust.Rule("krum", f=0), u).tolist() == [1.0]
    assert robust.aggregate(robust.Rule("multikrum", f=0, m=2), u).tolist() == [0.5]  # plain mean of 1 and 0


def krum_by_loops(updates, f):
    """Blanchard et al. 2017, Eq. of Section 4, with Python loops: score(i) = sum of the n - f - 2 smallest
    ||V_i - V_j||^2 over j != i."""
    n = len(updates)
    scores = []
    for i in range(n):
        dists = sorted(float(((updates[i] - updates[j]) ** 2).sum()) for j in range(n) if j != i)
        scores.append(sum(dists[: n - f - 2]))
    return scores


def quadratic_round(rule: robust.Rule, honest: int, flipped: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """One round on f(x) = ||x - x*||^2 / 2 from x = 0: honest updates x* + noise, sign-flipped ones -3 x*.
    Returns (the rule's result, the cohort)."""
    optimum = np.ones(20)
    good = optimum + 0.1 * rng.standard_normal((honest, 20))
    bad = np.tile(-optimum * 3, (flipped, 1))
    cohort = np.vstack([good, bad])
    return robust.aggregate(rule, cohort), cohort


def test_robust_rules_on_planted_sign_flipped_clients_equal_their_definitions():
    """8 honest, 2 flipped, 20 coordinates: every rule against its definition written out here, exactly (the
    planted attack only makes the cases telling: the mean breaks, each rule stays near x*)."""
    rng = np.random.default_rng(0)
    optimum = np.ones(20)
    mean, cohort = quadratic_round(robust.Rule("mean"), 8, 2, rng)
    assert np.linalg.norm(mean - optimum) > 0.7 * np.linalg.norm(optimum)  # the mean breaks
    ordered = np.sort(cohort, axis=0)
    median, _ = quadratic_round(robust.parse_aggregator("median"), 8, 2, np.random.default_rng(0))
    assert np.array_equal(median, (ordered[4] + ordered[5]) / 2)  # n = 10: the two middle values
    trimmed, _ = quadratic_round(robust.parse_aggregator("trimmed:0.25"), 8, 2, np.random.default_rng(0))
    assert np.allclose(trimmed, ordered[2:8].mean(axis=0), rtol=1e-15, atol=0)  # floor(2.5) = 2 each end
    scores = krum_by_loops(cohort, 2)
    best = int(np.argmin(scores))
    krum, _ = quadratic_round(robust.parse_aggregator("krum:2"), 8, 2, np.random.default_rng(0))
    assert best < 8 and np.array_equal(krum, cohort[best])
    three = np.argsort(scores, kind="stable")[:3]
    multi, _ = quadratic_round(robust.parse_aggregator("multikrum:2:3"), 8, 2, np.random.default_rng(0))
    assert set(three.tolist()) <= set(range(8)) and np.allclose(multi, cohort[three].mean(axis=0), rtol=1e-15)
    for result in (median, trimmed, krum, multi):
        assert np.linalg.norm(result - optimum) < 0.15 * np.linalg.norm(optimum)


def test_aggregator_forms_and_cohort_sizes():
    assert robust.parse_aggregator("multikrum:1:4") == robust.Rule("multikrum", f=1, m=4)
    assert robust.parse_aggregator("krum:2").least_cohort() == 7  # n > 2F + 2
    # the edges of each form: BETA 0, F 0 and M 1 are accepted
    assert robust.parse_aggregator("trimmed:0") == robust.Rule("trimmed", beta=0.0)
    assert robust.parse_aggregator("krum:0") == robust.Rule("krum", f=0)
    assert robust.parse_aggregator("multikrum:0:1") == robust.Rule("multikrum", f=0, m=1)
    assert robust.parse_aggregator("multikrum:3:1") == robust.Rule("multikrum", f=3, m=1)
    # Multi-Krum: max(2F + 3, M) updates; the others: one
    assert robust.Rule("multikrum", f=1, m=9).least_cohort() == 9 and robust.Rule("multikrum", f=1).least_cohort() == 5
    assert robust.Rule("median").least_cohort() == 1 and robust.Rule("trimmed", beta=0.2).least_cohort() == 1
    one = np.array([[1.0, 2.0]])
    assert robust.aggregate(robust.Rule("median"), one).tolist() == [1.0, 2.0]
    five = np.arange(10.0).reshape(5, 2)  # exactly the 2F + 3 = 5 that krum:1 needs
    # scores (2 nearest, squared): 8 + 32, 16, 16, 16, 32 + 8: the first of the tied middle three
    assert robust.aggregate(robust.Rule("krum", f=1), five).tolist() == [2.0, 3.0]
    with pytest.raises(ValueError, match=r"krum needs at least 5 updates, got 4"):
        robust.aggregate(robust.Rule("krum", f=1), five[:4])
    with pytest.raises(ValueError, match=r"expected one of mean, median, trimmed:BETA, krum:F, multikrum:F:M \(BETA"):
        robust.parse_aggregator("multikrum:1:0")
    for bad in ("krum", "trimmed:0.5", "multikrum:1", "max", "median:1"):
        with pytest.raises(ValueError, match="--aggregator"):
            robust.parse_aggregator(bad)
    cohort = robust.CohortAggregate(robust.Rule("krum", f=1), 3)
    cohort.add(np.ones(3), 1.0)
    with pytest.raises(ValueError, match="at least 5"):
        cohort.mean()


def test_attacks_and_their_draw():
    attack = parse_byzantine("0.25:sign-flip")
    sampled = np.arange(100, 120)
    chosen = attack.attackers(3, 7, sampled)
    assert len(chosen) == 5 and chosen <= set(sampled.tolist()) and chosen == attack.attackers(3, 7, sampled)
    assert chosen != attack.attackers(3, 8, sampled)
    delta = np.array([1.0, -2.0], dtype=np.float32)
    assert np.array_equal(attack.corrupt(delta, 0, 0, 0), -delta)
    assert np.array_equal(parse_byzantine("1:scale:3").corrupt(delta, 0, 0, 0), 3 * delta)
    noise = parse_byzantine("1:gaussian:2").corrupt(np.zeros(20000, np.float32), 0, 0, 5)
    assert abs(noise.std() - 2.0) < 0.05 and noise.dtype == np.float32
    assert parse_byzantine("") is None
    for bad in ("0.2", "1.5:sign-flip", "0.1:gaussian", "0.1:scale:-1", "0.1:scale:0", "x:sign-flip", "-0.1:sign-flip"):
        with pytest.raises(ValueError, match="--byzantine"):
            parse_byzantine(bad)
    assert parse_byzantine("0:sign-flip").fraction == 0.0 and parse_byzantine("1:sign-flip").fraction == 1.0
    assert parse_byzantine("0.2:gaussian:1.5") == parse_byzantine("0.2:gaussian:1.5") and (
        parse_byzantine("0.2:gaussian:1.5").fraction,
        parse_byzantine("0.2:gaussian:1.5").value,
    ) == (0.2, 1.5)
    with pytest.raises(ValueError) as err:
        parse_byzantine("0.2:flip")
    assert str(err.value) == (
        "--byzantine '0.2:flip': expected FRACTION:ATTACK, FRACTION in [0, 1], ATTACK one of sign-flip, "
        "gaussian:SIGMA, scale:FACTOR (SIGMA, FACTOR > 0), e.g. 0.2:sign-flip"
    )


def test_size_proportional_selection_frequencies_match_p_k():
    """Over R rounds of m draws each client k is drawn R m p_k times on average: within 4 standard deviations."""
    sizes = np.array([10, 20, 30, 40, 100, 300])
    p = sizes / sizes.sum()
    rounds, fraction = 2000, 0.5
    drawn = np.zeros(len(sizes))
    for r in range(rounds):
        ids, counts = sample_by_size(1, r, sizes, fraction)
        assert np.all(np.diff(ids) > 0) and counts.sum() == 3
        drawn[ids] += counts
    total = rounds * 3
    assert np.all(np.abs(drawn - total * p) < 4 * np.sqrt(total * p * (1 - p))), (drawn / total, p)


def test_power_of_choice_keeps_the_highest_losses_of_candidates_drawn_by_size():
    assert highest_losses({4: 0.5, 2: 3.0, 9: 1.0, 7: float("nan"), 1: 3.0}, 3) == [1, 2, 9]  # ties: lower id
    sizes = np.array([1, 1, 1, 1, 96])
    firsts = [sample_candidates(0, r, sizes, 2) for r in range(400)]
    assert all(len(set(c)) == 2 and list(c) == sorted(c) for c in firsts)
    assert sum(4 in c for c in firsts) > 390  # the large client is nearly always a candidate


def test_fednova_normaliser_closed_forms():
    assert fednova_normaliser(7, 0.0, 0.0) == 7
    rho, t = 0.9, 5  # sum over steps of the counters 1, 1 + rho, ...: sum_t (1 - rho^t) / (1 - rho)
    assert fednova_normaliser(t, rho, 0.0) == pytest.approx(sum((1 - rho**s) / (1 - rho) for s in range(1, t + 1)))
    em = 0.05  # proximal: sum_{j < t} (1 - eta mu)^j
    assert fednova_normaliser(t, 0.0, em) == pytest.approx(sum((1 - em) ** j for j in range(t)))


def test_fednova_update_is_the_normalised_average():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(5).astype(np.float32)
    ys = [rng.standard_normal(5).astype(np.float32) for _ in range(3)]
    n, a = [10.0, 20.0, 30.0], [2.0, 4.0, 9.0]
    agg = NormalisedSum(5)
    for y, nk, ak in zip(ys, n, a):
        agg.add_client(y, nk, ak, ak)
    p = np.array(n) / sum(n)
    tau_eff = float(p @ a)
    expected = x - tau_eff * sum(pk * (x - y) / ak for pk, y, ak in zip(p, ys, a))
    assert np.allclose(agg.step(x), expected, atol=1e-6)
    equal = NormalisedSum(5)
    for y, nk in zip(ys, n):
        equal.add_client(y, nk, 3.0, 3.0)
    assert np.allclose(equal.step(x), sum(pk * y for pk, y in zip(p, ys)), atol=1e-6)  # FedAvg


def test_scaffold_client_and_server_hooks():
    import torch

    from bench.strategies.fedavg.drift import Scaffold, VariateSum

    cfg = fl_config(aggregator="mean", selection="uniform", lr=0.5, server_lr=1.0, clients=4)
    alg = Scaffold(cfg, 2)
    alg.c[:] = [1.0, 2.0]
    alg.client_variates[3] = np.array([0.5, 0.5], dtype=np.float32)
    model = torch.nn.Linear(2, 1, bias=False)
    views = alg.begin_client(model, 3)
    model.weight.grad = torch.zeros_like(model.weight)
    alg.correct_gradients(model, views)
    assert model.weight.grad.numpy().tolist() == [[0.5, 1.5]]  # g - c_i + c
    x, y = np.array([1.0, 1.0], np.float32), np.array([0.0, 2.0], np.float32)
    dc = alg.end_client(3, views, x, y, steps=4)  # c_i+ = c_i - c + (x - y) / (K eta) = [0.5-1+0.5, 0.5-2-0.5]
    assert np.allclose(alg.client_variates[3], [0.0, -2.0]) and np.allclose(dc, [-0.5, -2.5])
    agg = VariateSum(2)
    alg.fold(agg, y, None, dc)
    xs = x.copy()
    alg.server_update(xs, agg, 0)
    alg.end_round(agg, None)
    assert np.allclose(xs, y) and np.allclose(alg.c, [1.0 - 0.5 / 4, 2.0 - 2.5 / 4])
    late = VariateSum(2)  # a round whose one client was late: the model stays, its dc_i still moves c
    alg.fold_late(late, y, None, dc)
    alg.end_round(late, None)
    assert late.weight == 0 and np.allclose(alg.c, [1.0 - 1.0 / 4, 2.0 - 5.0 / 4])


def test_local_steps_cycle_through_epochs():
    cfg = types.SimpleNamespace(batch_size=4, local_steps=0, local_epochs=2, seed=0)
    epochs = list(local_batches(cfg, 5, 1, 10))
    assert len(epochs) == 4 and all(len(b) == 4 for b in epochs)  # 2 full batches per epoch, remainder skipped
    steps = list(local_batches(types.SimpleNamespace(**{**vars(cfg), "local_steps": 7}), 5, 1, 10))
    assert len(steps) == 7 and all(np.array_equal(a, b) for a, b in zip(steps, epochs))
    small = list(local_batches(types.SimpleNamespace(**{**vars(cfg), "local_steps": 3, "batch_size": 32}), 5, 1, 10))
    assert len(small) == 3 and all(len(b) == 10 for b in small)  # a client smaller than B: one batch of all


@pytest.mark.parametrize(
    "options, message",
    [
        ({"fl_algorithm": "scaffold", "placement": "balanced"}, "--placement static"),
        ({"fl_algorithm": "scaffold", "placement": "static", "fedprox_mu": 0.1}, "--fedprox-mu 0"),
        ({"fl_algorithm": "fednova", "server_opt": "adam"}, "--server-opt avg"),
        ({"fl_algorithm": "fednova", "aggregation": "host"}, "--aggregation client"),
        ({"aggregator": "krum:3", "clients": 16, "fraction": 0.5}, "at least 9 clients per round"),
        ({"aggregator": "median", "compress": "fp16"}, "--compress"),
        ({"aggregator": "max"}, "expected one of"),
        ({"byzantine": "0.3:flip"}, "--byzantine"),
        ({"selection": "size", "aggregator": "median"}, "--aggregator mean"),
        ({"selection": "power-of-choice:1", "clients": 16, "fraction": 0.25}, "m <= D <= --clients"),
        ({"selection": "power-of-choice:8", "aggregation": "tree"}, "--aggregation client or host"),
        ({"selection": "best"}, "expected uniform, size or power-of-choice:D"),
        # what each algorithm needs (bench/strategies/fedavg/needs.py), message by message
        ({"fl_algorithm": "fedlama"}, "fedlama counts local work in steps: give --local-steps T"),
        ({"fedlama_phi": 3}, "--fedlama-phi applies to --fl-algorithm fedlama"),
        ({"fl_algorithm": "fedlama", "local_steps": 3, "byzantine": "0.2:sign-flip"}, "across rounds: no --byzantine"),
        ({"fl_algorithm": "fedlama", "local_steps": 3, "selection": "size"}, "across rounds: --selection uniform"),
        ({"fl_algorithm": "scaffold", "optimizer": "adam"}, r"fixed rate \(the variate's K eta\)"),
        ({"fl_algorithm": "scaffold", "selection": "size"}, "averages uniformly over the cohort: --selection uniform"),
        ({"feddyn_alpha": 0.1}, "--feddyn-alpha applies to --fl-algorithm feddyn"),
        ({"fl_algorithm": "feddyn", "fedprox_mu": 0.1}, r"own proximal term \(alpha\): --fedprox-mu 0"),
        ({"fl_algorithm": "feddyn", "placement": "balanced"}, "gradient state on the host that trains it"),
        ({"fl_algorithm": "feddyn", "aggregator": "median"}, "--aggregation client|--aggregator mean"),
        ({"fl_algorithm": "feddyn", "feddyn_alpha": 0.0}, "--feddyn-alpha must be positive"),
    ],
)
def test_federated_option_checks(options, message):
    from bench.config import Config, validate
    from bench.runtime.errors import UsageError

    with pytest.raises(UsageError, match=message):
        validate(Config(**({"strategy": "fedavg"} | options)))


def test_cohort_aggregate_keeps_each_update_and_applies_the_rule():
    """The robust rules' aggregate: updates kept whole in float64 (median of 1, 2, 10 per coordinate = 2, by hand),
    weights summed, memory counted, and emptied by reset."""
    cohort = robust.CohortAggregate(robust.Rule("median"), 2)
    for values, weight in (([1.0, -1.0], 3.0), ([10.0, 5.0], 1.0), ([2.0, 0.5], 2.0)):
        cohort.add(np.array(values, np.float32), weight)
    assert cohort.weight == 6.0 and cohort.nbytes == 3 * 2 * 8
    assert cohort.mean().tolist() == [2.0, 0.5] and cohort.mean().dtype == np.float32
    cohort.reset()
    assert cohort.updates == [] and cohort.weight == 0.0 and cohort.nbytes == 0
    assert robust.krum_select(np.array([[0.0], [1.0], [3.0], [10.0]]), 1).tolist() == [0]  # one update by default
    assert robust.krum_select(np.zeros((40, 3)), 2, 5).tolist() == [0, 1, 2, 3, 4]  # ties: the lower index


def fl_cfg(**kw):
    base = dict(aggregator="mean", selection="uniform", lr=0.1, server_lr=1.0, clients=5, fedprox_mu=0.0,
                momentum=0.0, fl_algorithm="fedavg", server_opt="avg", seed=0, fraction=1.0)  # fmt: skip
    return fl_config(**(base | kw))


@pytest.mark.parametrize("mu", [0.0, 0.1])
def test_fednova_rounds_through_its_hooks_are_the_papers_update(mu):
    """Two rounds of three clients with unequal n_i, steps tau_i and normalisers ||a_i||_1 (momentum makes
    a_i != tau_i), folded through FedNova's hooks into one aggregate reset between rounds: x <- x - tau_eff
    sum_i p_i (x - y_i) / a_i (Wang et al. 2020, Eq. 7), tau_eff = sum_i p_i a_i, or sum_i p_i tau_i with FedProx's
    term (mu > 0, the authors' code)."""
    from bench.strategies.fedavg.protocol import ClientStatus, client_header
    from bench.strategies.fedavg.registry import algorithm_for

    alg = algorithm_for(fl_cfg(fl_algorithm="fednova", fedprox_mu=mu), 4)
    rng = np.random.default_rng(2)
    x = rng.standard_normal(4).astype(np.float32)
    aggregate = alg.new_aggregate()
    for _ in range(2):
        clients = [(rng.standard_normal(4).astype(np.float32), n, tau, a)
                   for n, tau, a in ((10.0, 3, 4.5), (30.0, 5, 8.0), (20.0, 2, 2.9))]  # fmt: skip
        aggregate.reset()
        for k, (y, n, tau, a) in enumerate(clients):
            alg.fold(aggregate, y, client_header(k, ClientStatus.OK, n, steps=tau, normaliser=a))
        p = np.array([c[1] for c in clients]) / 60.0
        tau_eff = sum(pi * (c[2] if mu > 0 else c[3]) for pi, c in zip(p, clients))
        expected = x - tau_eff * sum(pi * (x.astype(np.float64) - c[0]) / c[3] for pi, c in zip(p, clients))
        alg.server_update(x, aggregate, 0)
        assert x.dtype == np.float32 and np.allclose(x, expected, rtol=1e-6, atol=1e-6)


def test_scaffold_two_rounds_through_its_hooks_are_option_two():
    """Karimireddy et al. 2020, Algorithm 1 (option II), N = 5 clients, eta_l = 0.1, eta_g = 0.5, two rounds of two
    clients (client 1 in both, so its c_i carries over) on a model of two layers (four tensors):
    correction c - c_i laid out per parameter; c_i+ = c_i - c + (x - y_i) / (K eta_l); x <- x + eta_g mean(y_i - x);
    c <- c + (1/N) sum (c_i+ - c_i). The aggregate is reset between rounds."""
    import torch

    from bench.strategies.fedavg.drift import Scaffold

    alg = Scaffold(fl_cfg(server_lr=0.5), 9)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))  # 4 + 2 + 2 + 1 entries
    rng = np.random.default_rng(4)
    x = rng.standard_normal(9).astype(np.float32)
    c, c_i = np.zeros(9), {}
    aggregate = alg.new_aggregate()
    for round_clients in ([1, 3], [1, 4]):
        aggregate.reset()
        ys, dcs = [], []
        for k, steps in zip(round_clients, (2, 3)):
            views = alg.begin_client(model, k)
            correction = c - c_i.get(k, np.zeros(9))
            assert np.allclose(np.concatenate([v.numpy().ravel() for v in views]), correction, atol=1e-6)
            for p in model.parameters():
                p.grad = torch.ones_like(p)
            alg.correct_gradients(model, views)
            grads = np.concatenate([p.grad.numpy().ravel() for p in model.parameters()])
            assert np.allclose(grads, 1.0 + correction, atol=1e-6)
            y = (x + rng.standard_normal(9)).astype(np.float32)
            new = c_i.get(k, np.zeros(9)) - c + (x - y) / (steps * 0.1)
            dc = alg.end_client(k, views, x, y, steps)
            assert dc.dtype == np.float32 and np.allclose(dc, new - c_i.get(k, np.zeros(9)), atol=1e-5)
            assert alg.client_variates[k].dtype == np.float32 and np.allclose(alg.client_variates[k], new, atol=1e-5)
            ys.append(y)
            dcs.append(new - c_i.get(k, np.zeros(9)))
            c_i[k] = new
            alg.fold(aggregate, y, None, dc)
        expected_x = x + 0.5 * np.mean([y - x for y in ys], axis=0)
        alg.server_update(x, aggregate, 0)
        alg.end_round(aggregate, x)
        c = c + sum(dcs) / 5
        assert np.allclose(x, expected_x, atol=1e-6) and np.allclose(alg.c, c, atol=1e-5)
        assert alg.c.dtype == np.float32 and alg.download_extra() is alg.c


def test_feddyn_client_objective_has_the_papers_gradient():
    """Acar et al. 2021, Algorithm 1: the client's objective L_k(theta) - <g_k, theta> + alpha/2 ||theta -
    theta^{t-1}||^2 has gradient grad L_k - g_k + alpha (theta - theta^{t-1}). Checked with a loss whose gradient
    is known (sum of parameters: ones), at a point moved off the anchor. Mutations caught: the linear term's sign,
    alpha halved or dropped, the anchor taken after the move."""
    import torch

    from bench.strategies.fedavg.dynamic import FedDyn

    alg = FedDyn(fl_cfg(fl_algorithm="feddyn", feddyn_alpha=0.3), 9)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    rng = np.random.default_rng(5)
    g = rng.standard_normal(9).astype(np.float32)
    alg.client_grads[2] = g
    anchor = np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])
    state = alg.begin_client(model, 2)
    step = rng.standard_normal(9).astype(np.float32)
    with torch.no_grad():
        at = 0
        for p in model.parameters():
            p += torch.from_numpy(step[at : at + p.numel()].reshape(p.shape))
            at += p.numel()
    loss = alg.client_loss(sum(p.sum() for p in model.parameters()), model, state)
    loss.backward()
    grads = np.concatenate([p.grad.numpy().ravel() for p in model.parameters()])
    assert np.allclose(grads, 1.0 - g + 0.3 * step, atol=1e-5)
    fresh = alg.begin_client(model, 7)  # a client never trained: g_k = 0, no linear term
    assert all(part is None for part in fresh[1])
    assert not np.allclose(anchor, np.concatenate([a.numpy().ravel() for a in fresh[0]]))  # anchored where it is


def test_feddyn_rounds_through_its_hooks_are_algorithm_one():
    """Two rounds over m = 5 clients, alpha = 0.2: g_k <- g_k - alpha (y_k - x) on the hosts; h <- h - (alpha/m)
    sum_{P_t} (y_k - x); x <- mean_{P_t} y_k - h / alpha, written out in numpy. Round 2 has a late client (model
    left out of the mean, its move into h) so that h = (1/m) sum_k g_k still holds. Mutations caught: 1/m as
    1/|P_t|, the late move dropped, the mean weighted by n_k, h's sign."""
    from bench.strategies.fedavg.dynamic import FedDyn
    from bench.strategies.fedavg.protocol import ClientStatus, client_header

    alg = FedDyn(fl_cfg(fl_algorithm="feddyn", feddyn_alpha=0.2), 6)
    rng = np.random.default_rng(8)
    x = rng.standard_normal(6).astype(np.float32)
    h, g = np.zeros(6), {}
    aggregate = alg.new_aggregate()
    for on_time, late in (([0, 2], []), ([2, 3], [4])):
        aggregate.reset()
        start, ys, moves = x.copy(), [], []
        for k in on_time + late:
            y = (x + rng.standard_normal(6)).astype(np.float32)
            alg.end_client(k, None, x, y, 3)
            g[k] = g.get(k, np.zeros(6)) - 0.2 * (y - x)
            assert np.allclose(alg.client_grads[k], g[k], atol=1e-5)
            head = client_header(k, ClientStatus.OK, 10.0 * (k + 1), 1.0, 0.0, 0.0, 3, 3.0)
            (alg.fold_late if k in late else alg.fold)(aggregate, y, head)
            moves.append(y - x)
            ys += [] if k in late else [y]
        h = h - 0.2 / 5 * sum(moves)
        alg.server_update(x, aggregate, 0)
        alg.end_round(aggregate, start)
        assert np.allclose(x, np.mean(ys, axis=0) - h / 0.2, atol=1e-4)
        assert np.allclose(alg.h, h, atol=1e-6) and np.allclose(alg.h, sum(g.values()) / 5, atol=1e-6)
    every_late = alg.new_aggregate()
    y = x + 1.0
    alg.fold_late(every_late, y, None)
    alg.end_round(every_late, x)  # no server update in such a round; h still moves
    assert np.allclose(alg.h, h - 0.2 / 5 * (y - x), atol=1e-6)

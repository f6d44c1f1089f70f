"""Capacity tiers (bench/strategies/fedavg/tiers.py) and partial training's per-layer mean (partial.py), against
hand-computed cases, the module names torch gives resnet20's layers, and the InclusiveFL server update written out
in numpy."""

import numpy as np
import pytest

from bench.strategies.fedavg.partial import LayerwiseMean
from bench.strategies.fedavg.tiers import parse_tiers, shares_of


def test_shares_sum_to_the_total_by_largest_remainder():
    """0.5, 0.25, 0.25 of 10 is 5, 2.5, 2.5: the tie goes to the earlier tier (5, 3, 2); of 7: 3.5, 1.75, 1.75 ->
    3, 2, 2 (the two largest remainders 0.75, 0.75 before 0.5). Mutations caught: rounding each share (5, 2, 2 sums
    to 9), the remainder to the smallest fractions."""
    assert shares_of((0.5, 0.25, 0.25), 10).tolist() == [5, 3, 2]
    assert shares_of((0.5, 0.25, 0.25), 7).tolist() == [3, 2, 2]
    assert shares_of((1.0, 0.0, 0.0), 3).tolist() == [3, 0, 0]


@pytest.mark.parametrize("clients", [1, 7, 16, 130])
def test_assignment_is_seeded_and_has_the_shares(clients):
    tiers = parse_tiers("strong:0.5,moderate:0.25,weak:0.25", "moderate:1,weak:2", "", "cnn")
    got = tiers.assign(3, clients)
    assert np.bincount(got, minlength=3).tolist() == shares_of((0.5, 0.25, 0.25), clients).tolist()
    assert np.array_equal(got, tiers.assign(3, clients))  # every rank computes the same
    if clients >= 16:  # another seed, another assignment (a fixed one would pass the counts)
        assert not np.array_equal(got, tiers.assign(4, clients))


def test_resnet20_defaults_leave_the_first_conv_and_3_or_6_blocks_untrained():
    """InclusiveFL's tiers: moderate trains from the 4th residual block on, weak from the 7th; the layer names are
    torch's module names, not the suite's arithmetic."""
    torch = pytest.importorskip("torch")
    from bench.workload.models import build, layers_of

    tiers = parse_tiers("strong:0.5,moderate:0.25,weak:0.25", "", "", "resnet20")
    names = [layer.name for layer in layers_of(build("resnet20", (3, 32, 32), 10, 0))]
    assert torch is not None and names[0] == "conv1" and names[1] == "bn1"
    assert [names[n] for n in tiers.frozen[1:]] == ["blocks.3.conv1", "blocks.6.conv1"]
    assert tiers.trained(2, len(names)).tolist() == [False] * 26 + [True] * (len(names) - 26)


@pytest.mark.parametrize(
    "tiers, frozen, speed, model, says",
    [
        ("strong:0.5,weak:0.4", "weak:1", "", "cnn", "sum to 1"),
        ("strong:0.5,feeble:0.5", "", "", "cnn", "tiers from strong"),
        ("strong:0.5,weak:0.5", "", "", "cnn", "how many leading layers do weak"),
        ("strong:1", "strong:1", "", "cnn", "strong:0"),
        ("strong:0.5,weak:0.5", "weak:1.5", "", "cnn", "whole numbers"),
        ("strong:0.5,weak:0.5", "weak:1", "weak:0.5", "cnn", "factors >= 1"),
        ("", "weak:1", "", "cnn", "give it too"),
        ("strong:0.5,strong:0.5", "", "", "cnn", "strong given twice"),
        ("strong:0.5,weak:0.5", "weak:1", "weak:inf", "cnn", "inf is not a finite number"),
        ("strong:0.1,weak:0.9", "weak:1", "", "cnn", "strong gets none of the 3 clients"),
    ],
)
def test_bad_tier_options_say_what_is_expected(tiers, frozen, speed, model, says):
    with pytest.raises(ValueError, match=says):
        parse_tiers(tiers, frozen, speed, model, clients=3)


def test_frozen_counts_only_where_the_algorithm_reads_them():
    """An algorithm that trains the full model at every tier (FedAvg with tiers for their speed) needs no frozen
    counts and records none, even on resnet20; width reduction needs none for a tier given its ratio."""
    plain = parse_tiers("strong:0.5,weak:0.5", "", "weak:3", "resnet20", clients=4, uses_frozen=False)
    assert plain.frozen == (0, 0, 0) and plain.speed == (1.0, 1.0, 3.0)
    assert parse_tiers("strong:0.5,weak:0.5", "", "", "cnn", "weak:0.4", clients=4).frozen == (0, 0, 0)


def test_layerwise_mean_is_the_inclusivefl_update():
    """Three layers (sizes 2, 3, 1), three clients: a strong one (n = 2) trains all, a moderate one (n = 3) layers 1
    and 2, a weak one (n = 5) layer 2 only; the values it sends for layers it did not train are garbage and must not
    be read. Layer 0 = strong's; layer 1 = (2 y_s + 3 y_m) / 5; layer 2 = (2 y_s + 3 y_m + 5 y_w) / 10. A second round
    with only the weak client keeps layers 0 and 1 as they were."""
    offsets = np.array([0, 2, 5, 6])
    gen = np.random.default_rng(0)
    ys = {name: gen.normal(size=6).astype(np.float32) for name in ("s", "m", "w")}
    masks = {"s": [1, 1, 1], "m": [0, 1, 1], "w": [0, 0, 1]}
    n = {"s": 2.0, "m": 3.0, "w": 5.0}
    mean = LayerwiseMean(offsets)
    for name in ("s", "m", "w"):
        sent = ys[name].copy()
        sent[: offsets[int(np.argmax(masks[name]))]] = np.nan  # not trained: never to be read
        mean.add(sent, n[name], np.array(masks[name], dtype=bool))
    x = np.zeros(6, dtype=np.float32)
    mean.update(x)
    s, m, w = (ys[k].astype(np.float64) for k in ("s", "m", "w"))
    expected = np.concatenate([s[:2], (2 * s[2:5] + 3 * m[2:5]) / 5, (2 * s[5:] + 3 * m[5:] + 5 * w[5:]) / 10])
    assert np.array_equal(x, expected.astype(np.float32)) and mean.weight == 10.0
    mean.reset()
    mean.add(ys["w"], 5.0, np.array(masks["w"], dtype=bool))
    kept = x.copy()
    mean.update(x)
    assert np.array_equal(x[:5], kept[:5]) and x[5] == ys["w"][5]


def test_info_lists_a_models_layers_as_tier_frozen_counts_them(capsys):
    """``python -m bench info --model mlp``: fc1 holds 64 x 200 + 200 = 13,000 parameters (52,000 bytes), fc2
    200 x 200 + 200, fc3 200 x 10 + 10, in that order (hand-computed), each its own stage."""
    pytest.importorskip("torch")
    from mpi4py import MPI

    from bench.info import model_layers

    assert model_layers(MPI.COMM_SELF, "mlp", "1x8x8", 10) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:-1]]
    assert [(r[0], r[1], r[2], r[3], r[6]) for r in rows] == [
        ("0", "fc1", "13,000", "52,000", "0"),
        ("1", "fc2", "40,200", "160,800", "1"),
        ("2", "fc3", "2,010", "8,040", "2"),
    ]  # fmt: skip


@pytest.mark.parametrize("width", ["weak:0", "weak:1.5", "strong:0.5", "weak:x"])
def test_bad_tier_widths_are_refused(width):
    with pytest.raises(ValueError, match="--tier-width"):
        parse_tiers("strong:0.5,weak:0.5", "weak:1", "", "cnn", width)


def test_given_tier_widths_are_kept_per_tier():
    tiers = parse_tiers("strong:0.5,moderate:0.25,weak:0.25", "", "", "resnet20", "weak:0.4")
    assert tiers.width == (0.0, 0.0, 0.4) and tiers.frozen == (0, 14, 26)


def test_partial_training_folds_each_layer_over_its_trainers():
    """4 clients, 2 strong, 2 weak leaving layer 0 (2 entries) untrained; layer 1 has 1 entry. Strong a (n = 1),
    weak b (n = 3): layer 0 = a's, layer 1 = (a + 3 b) / 4; the weak client's layer 0 values are never read. A
    frozen count that leaves nothing to train is refused. Mutations caught: the mask ignored, weights per client
    instead of per layer."""
    from bench.runtime.errors import UsageError
    from bench.strategies.fedavg.partial import PartialTraining
    from bench.strategies.fedavg.protocol import client_header
    from tests.fl_config import fl_config

    cfg = fl_config(strategy="fedavg", fl_algorithm="partial", clients=4, client_tiers="strong:0.5,weak:0.5",
                    tier_frozen="weak:1")  # fmt: skip
    algorithm = PartialTraining(cfg, 3)
    algorithm.set_model(np.array([0, 2, 3]))
    strong, weak = (int(np.flatnonzero(algorithm.tier_of == t)[0]) for t in (0, 2))
    assert algorithm.trained(strong).tolist() == [True, True] and algorithm.trained(weak).tolist() == [False, True]
    assert algorithm.uploaded_bytes(weak, np.array([8, 4])) == 4
    mean = algorithm.new_aggregate()
    algorithm.fold(mean, np.array([1, 2, 3], dtype=np.float32), client_header(strong, 0, samples=1))
    algorithm.fold(mean, np.array([np.nan, np.nan, 7], dtype=np.float32), client_header(weak, 0, samples=3))
    x = np.zeros(3, dtype=np.float32)
    algorithm.server_update(x, mean, 0)
    assert x.tolist() == [1, 2, (3 + 21) / 4]
    with pytest.raises(UsageError, match="leaves no layer to train"):
        PartialTraining(fl_config(strategy="fedavg", fl_algorithm="partial", clients=4,
                                  client_tiers="strong:0.5,weak:0.5", tier_frozen="weak:2"), 3).set_model(
            np.array([0, 2, 3]))  # fmt: skip

"""AutoFreeze's rule (bench/strategies/freezing.py) against PipeTransformer's Eq. 1 written out here and
hand-computed cases; the option's forms; what freezing does to the parameters."""

import math

import numpy as np
import pytest

from bench.strategies.freezing import Freezer, FreezeSpec, next_frozen, parse_freeze

torch = pytest.importorskip("torch")


def equation_1(frozen: int, norms, alpha: float) -> int:
    """L_frozen(T) = min(floor(L_frozen(T-1) + alpha (L - L_frozen(T-1))), argmin over the active layers
    l = L_frozen(T-1) + 1 .. L (1-based) of ||g_l||, the lowest l on ties), never below L_frozen(T-1)."""
    layers = len(norms)
    cap = math.floor(frozen + alpha * (layers - frozen))
    active = list(range(frozen + 1, layers + 1))
    least = min(norms[l - 1] for l in active)
    smallest = next(l for l in active if norms[l - 1] == least)
    return max(frozen, min(cap, smallest))


@pytest.mark.parametrize(
    "frozen, norms, alpha, expected",
    [
        (0, [5, 4, 1, 3, 2, 6, 7, 8, 9, 9], 0.5, 3),  # the minimum (layer 3) before the cap (5)
        (0, [5, 4, 3, 3, 2, 6, 7, 0.1, 9, 9], 0.5, 5),  # the minimum (layer 8) after the cap: the cap
        (0, [5, 1, 3, 3, 2, 1, 7, 8, 9, 9], 0.9, 2),  # a tie (layers 2 and 6): the lower
        (4, [0, 0, 0, 0, 3, 2, 1, 1, 5, 5], 0.2, 5),  # frozen layers' zero norms ignored; cap floor(4 + 1.2) = 5
        (4, [0, 0, 0, 0, 0.5, 2, 1, 1, 5, 5], 0.9, 5),  # the first active layer is the least: one more
        (0, [3, 2, 1, 4, 5], 0.1, 0),  # floor(0.5) = 0: alpha too small to move on 5 layers
        (2, [0, 0, 9, 8, 7, 6, 5, 4, 3, 2], 0.7, 7),  # the last layer least: the cap floor(2 + 5.6) = 7
    ],
)
def test_rule_on_hand_made_norms(frozen, norms, alpha, expected):
    """Mutations caught: the cap rounded up, the argmin over all layers (frozen zeros win), the 0-based index
    taken as the prefix length (one layer short), the last minimum on ties."""
    norms = np.asarray(norms, dtype=np.float64)
    assert equation_1(frozen, norms, alpha) == expected
    assert next_frozen(frozen, norms, alpha) == expected


@pytest.mark.parametrize("seed", range(20))
def test_rule_on_random_norms_for_alphas_from_0_1_to_0_9(seed):
    gen = np.random.default_rng(seed)
    layers = int(gen.integers(2, 40))
    frozen = int(gen.integers(0, layers - 1))
    norms = gen.choice([0.5, 1.0, 2.0, 3.0], size=layers)  # few values: ties are common
    for alpha in (0.1, 0.3, 0.5, 0.7, 0.9):
        got = next_frozen(frozen, norms, alpha)
        assert got == equation_1(frozen, norms, alpha) and frozen <= got < layers


BAD = [("auto:0", 10), ("auto:1", 10), ("auto:0.5", 0), ("fixed:0@3", 10), ("fixed:2", 10), ("fixed:2@0", 10),
       ("half:2", 10), ("auto:x", 10)]  # fmt: skip


@pytest.mark.parametrize("spec, every", BAD)
def test_bad_freeze_options_are_refused(spec, every):
    with pytest.raises(ValueError, match="--freeze"):
        parse_freeze(spec, every)


def test_good_freeze_options():
    assert parse_freeze("auto:0.5", 20) == FreezeSpec("auto", alpha=0.5, every=20)
    assert parse_freeze("fixed:3@100", 20) == FreezeSpec("fixed", layers=3, at_step=100)
    assert not parse_freeze("", 20).on


def test_freeze_points_and_what_freezing_does_to_parameters():
    """auto every 3 steps: after rows 2, 5, 8 (0-based); fixed:2@4 after row 3 only. A frozen parameter stops
    requiring a gradient and loses the one it had; the others keep theirs."""
    from bench.workload.models import build, layers_of

    layers = layers_of(build("mlp", (1, 8, 8), 10, 0))
    auto = Freezer(FreezeSpec("auto", alpha=0.5, every=3), layers)
    assert [s for s in range(9) if auto.due(s)] == [2, 5, 8]
    fixed = Freezer(FreezeSpec("fixed", layers=2, at_step=4), layers)
    assert [s for s in range(9) if fixed.due(s)] == [3]
    for p in (p for layer in layers for p in layer.params):
        p.grad = torch.ones_like(p)
    assert fixed.decide(3) and fixed.frozen == 2 and not fixed.decide(4)
    frozen = [p for layer in layers[:2] for p in layer.params]
    assert all(not p.requires_grad and p.grad is None for p in frozen)
    assert all(p.requires_grad and p.grad is not None for p in layers[2].params)


def test_layer_norms_are_torchs_norm_of_each_layers_gradients():
    """Against torch.linalg.vector_norm of a layer's gradients concatenated; a layer with no gradient: 0."""
    from bench.strategies.freezing import layer_norms
    from bench.workload.models import build, layers_of

    layers = layers_of(build("mlp", (1, 8, 8), 10, 0))
    gen = torch.Generator().manual_seed(0)
    for layer in layers[1:]:
        for p in layer.params:
            p.grad = torch.randn(p.shape, generator=gen)
    layers[0].params[0].grad = None
    expected = [0.0] + [float(torch.linalg.vector_norm(torch.cat([p.grad.reshape(-1) for p in layer.params])))
                        for layer in layers[1:]]  # fmt: skip
    assert layer_norms(layers) == pytest.approx(expected, rel=1e-6)


def test_an_auto_decision_reads_the_norms_and_records_them():
    """mlp (3 layers), alpha 0.9: cap floor(2.7) = 2; gradients of norm 3, 1, 2 -> the least is layer 2: freeze
    2. The norms and the row are kept for the results file."""
    from bench.workload.models import build, layers_of

    layers = layers_of(build("mlp", (1, 8, 8), 10, 0))
    for layer, norm in zip(layers, (3.0, 1.0, 2.0)):
        count = sum(p.numel() for p in layer.params)
        for p in layer.params:
            p.grad = torch.full(p.shape, norm / count**0.5)
    freezer = Freezer(FreezeSpec("auto", alpha=0.9, every=2), layers)
    assert not freezer.decide(0) and freezer.norms_at == -1
    assert freezer.decide(1) and freezer.frozen == 2 and freezer.norms_at == 1
    assert freezer.norms == pytest.approx([3.0, 1.0, 2.0], rel=1e-6)


def test_block_units_by_hand():
    """The transformer's 16 layers are 6 blocks (embed, pos, blocks.0 x 6, blocks.1 x 6, norm, head); resnet20's
    39 are conv1, bn1, 9 residual blocks of 4, fc. Mutation caught: the block cut one part too late (attn kept
    apart)."""
    from bench.strategies.freezing import block_units
    from bench.workload.models import build, layers_of

    transformer = [layer.name for layer in layers_of(build("transformer", (1, 8, 8), 10, 0))]
    assert block_units(transformer) == [1, 1, 6, 6, 1, 1]
    resnet = [layer.name for layer in layers_of(build("resnet20", (3, 8, 8), 10, 0))]
    assert block_units(resnet) == [1, 1] + [4] * 9 + [1]
    assert block_units(["fc1", "fc2"]) == [1, 1]


def test_an_auto_decision_over_blocks_freezes_whole_blocks():
    """resnet20, alpha 0.5 over 12 units: cap floor(6) = 6 units. Every layer's gradient has norm 1 but those of
    blocks.1 (layers 6-9: 0.05, then 0.1 each): units conv1, bn1, blocks.0, blocks.1, ... so the least is the 4th
    (1-based): freeze conv1, bn1, blocks.0 and blocks.1 = 2 + 2 x 4 = 10 layers. A unit's norm joins its layers'
    (blocks.1's is 0.18, conv1's 1); with per-layer units the same norms freeze through layer 7 (the 0.05)."""
    from bench.workload.models import build, layers_of

    def gradients():
        layers = layers_of(build("resnet20", (3, 8, 8), 10, 0))
        for i, layer in enumerate(layers):
            norm = 0.05 if i == 6 else 0.1 if 6 < i < 10 else 1.0  # blocks.1's layers
            count = sum(p.numel() for p in layer.params)
            for p in layer.params:
                p.grad = torch.full(p.shape, norm / count**0.5)
        return layers

    freezer = Freezer(FreezeSpec("auto", alpha=0.5, every=1, unit="block"), gradients())
    assert freezer.decide(0) and freezer.frozen == 10
    per_layer = Freezer(FreezeSpec("auto", alpha=0.5, every=1), gradients())
    assert per_layer.decide(0) and per_layer.frozen == 7
    with pytest.raises(ValueError, match="freeze-unit"):
        parse_freeze("fixed:2@3", 10, "block")


def test_the_smallest_accepted_values():
    assert parse_freeze("auto:0.5", 1).every == 1
    assert parse_freeze("fixed:1@1", 1) == FreezeSpec("fixed", layers=1, at_step=1)
    assert parse_freeze("auto:0.5", 7, "block").unit == "block"


def resnet20_with_norms(stem: float, first_block: float, rest: float):
    """resnet20's layers with gradients whose norm per layer is ``stem`` for conv1 and bn1, ``first_block`` for each
    of blocks.0's four layers and ``rest`` for every other layer."""
    from bench.workload.models import build, layers_of

    layers = layers_of(build("resnet20", (3, 8, 8), 10, 0))
    for i, layer in enumerate(layers):
        norm = stem if i < 2 else first_block if i < 6 else rest
        count = sum(p.numel() for p in layer.params)
        for p in layer.params:
            p.grad = torch.full(p.shape, norm / count**0.5)
    return layers


def test_a_block_norm_joins_its_layers_squares():
    """resnet20 in blocks: conv1 and bn1 have norm 2.05, blocks.0's four layers 1.02 each (its norm sqrt(4 x
    1.02^2) = 2.04, the least), every other layer 5: freeze conv1, bn1 and blocks.0 = 6 layers. Mutation caught:
    the layers' norms doubled instead of squared (blocks.0 then 2.86: conv1 would be the least)."""

    layers = resnet20_with_norms(2.05, 1.02, 5.0)
    freezer = Freezer(FreezeSpec("auto", alpha=0.5, every=1, unit="block"), layers)
    assert freezer.decide(0) and freezer.frozen == 6


def test_no_decision_once_only_the_last_unit_is_left_and_none_when_the_prefix_would_not_grow():
    """mlp (3 layers): with 2 frozen no freeze point is due (the last layer always trains); a decision whose
    target is the current prefix says False (nothing to rebuild)."""
    from bench.workload.models import build, layers_of

    layers = layers_of(build("mlp", (1, 8, 8), 10, 0))
    freezer = Freezer(FreezeSpec("auto", alpha=0.5, every=1), layers)
    freezer.freeze_to(2)
    assert not freezer.due(0)
    freezer = Freezer(FreezeSpec("auto", alpha=0.1, every=1), layers)  # cap floor(0.3) = 0: no growth
    for p in (p for layer in layers for p in layer.params):
        p.requires_grad_(True)
        p.grad = torch.ones_like(p)
    assert freezer.due(0) and not freezer.choose(0) and freezer.frozen == 0


def test_the_summary_says_what_was_frozen(capsys):
    """Rank 0's rows: 0, 0, 2, 2 frozen of 3 layers; all ranks send 3 MiB at step 1 and 1 MiB at the last: the line
    says 2 of 3 from step 3 and the two byte counts; a run that froze nothing says so."""
    import numpy as np

    from bench.measure.summary import print_freezing

    sent = np.zeros((2, 4, 3))
    sent[:, 0] = 2**19  # 2 ranks x 3 layers x 0.5 MiB
    sent[:, -1, 2] = 2**19
    print_freezing({"freeze/frozen_layers": np.array([[0, 0, 2, 2]] * 2), "timing/comm_bytes": sent})
    out = capsys.readouterr().out
    assert "2 of 3 layers frozen at the end, the first from step 3" in out and "3.000 at step 1, 1.000 at step 4" in out
    hits, held = np.array([[0, 0, 3, 8], [0, 0, 2, 7]]), np.array([[0, 0, 2**20, 2**21], [0, 0, 2**20, 3 * 2**20]])
    print_freezing({"freeze/frozen_layers": np.array([[0, 0, 2, 2]] * 2), "timing/comm_bytes": sent,
                    "freeze/cache_hits": hits, "freeze/cache_bytes": held})  # fmt: skip
    assert (
        "20 samples' prefix output reused, all ranks (15 in the last step); 3.00 MiB held at the end on the rank"
        in (capsys.readouterr().out)
    )
    local = np.zeros((2, 4, 3))
    local[:, 1] = 2**19  # localsgd: only rows 1 and 3 average
    local[:, 3, 2] = 2**19
    print_freezing({"freeze/frozen_layers": np.array([[0, 0, 2, 2]] * 2), "timing/comm_bytes": local})
    assert "3.000 at step 2, 1.000 at step 4" in capsys.readouterr().out
    print_freezing({"freeze/frozen_layers": np.zeros((2, 4), int), "timing/comm_bytes": sent})
    assert "no layer frozen" in capsys.readouterr().out
    print_freezing({"timing/comm_bytes": sent})
    assert capsys.readouterr().out == ""


def test_due_until_only_the_last_unit_is_left_in_a_longer_model():
    """cnn (4 layers): due with 0, 1 or 2 frozen, not with 3. Mutation caught: the stop read at another unit bound
    (bounds[2] or bounds[-3] instead of bounds[-2])."""
    from bench.workload.models import build, layers_of

    layers = layers_of(build("cnn", (1, 8, 8), 10, 0))
    freezer = Freezer(FreezeSpec("auto", alpha=0.5, every=1), layers)
    due = []
    for count in (0, 1, 2, 3):
        freezer.frozen = count
        due.append(freezer.due(0))
    assert due == [True, True, True, False]


def test_a_decision_on_agreed_norms_and_a_block_norm_from_squares_not_cubes():
    """cnn, alpha 0.9 (cap 3): this rank's own gradients are all ones, but ``agree`` hands back norms whose least is
    layer 2 (1-based), so 2 layers freeze and the agreed norms are recorded. resnet20 in blocks (conv1 and bn1 are
    units of their own): conv1 and bn1 at 1.8, blocks.0's four layers at 1.0 (block norm sqrt(4) = 2), the rest 9:
    the least unit is conv1, so 1 layer freezes; cubes instead of squares (1.8^1.5 = 2.41 against 2) would pick
    blocks.0 (6 layers). Mutations caught: ``agree`` ignored, the layers' norms cubed."""
    from bench.workload.models import build, layers_of

    layers = layers_of(build("cnn", (1, 8, 8), 10, 0))
    for p in (p for layer in layers for p in layer.params):
        p.grad = torch.ones_like(p)
    freezer = Freezer(FreezeSpec("auto", alpha=0.9, every=1), layers)
    agreed = np.array([5.0, 0.5, 3.0, 4.0])
    assert freezer.choose(7, lambda own: agreed) and freezer.frozen == 2
    assert freezer.norms_at == 7 and freezer.norms.tolist() == agreed.tolist()

    layers = resnet20_with_norms(1.8, 1.0, 9.0)
    freezer = Freezer(FreezeSpec("auto", alpha=0.5, every=1, unit="block"), layers)
    assert freezer.choose(0) and freezer.frozen == 1


def test_make_freezer_refuses_what_cannot_freeze_and_is_off_without_freeze():
    """A fixed prefix of all 3 layers, and alpha 0.3 on 3 layers (cap floor(0.9) = 0), are refused; 2 of 3 and 0.34
    (cap 1) are accepted. Mutations caught: the bound moved by one layer, the cap's floor taken as a ceiling."""
    from bench.runtime.errors import UsageError
    from bench.strategies.freezing import make_freezer
    from bench.workload.models import build, layers_of

    layers = layers_of(build("mlp", (1, 8, 8), 10, 0))
    assert make_freezer(FreezeSpec(), layers) is None
    with pytest.raises(UsageError, match="the model has 3 layers"):
        make_freezer(FreezeSpec("fixed", layers=3, at_step=1), layers)
    assert make_freezer(FreezeSpec("fixed", layers=2, at_step=1), layers).frozen == 0
    with pytest.raises(UsageError, match=r"floor\(ALPHA x 3 layers\) is 0"):
        make_freezer(FreezeSpec("auto", alpha=0.3, every=1), layers)
    assert make_freezer(FreezeSpec("auto", alpha=0.34, every=1), layers) is not None
    blocks = layers_of(build("resnet20", (3, 8, 8), 10, 0))  # conv1, bn1, 9 blocks, fc: 0.05 x 12 = 0.6
    with pytest.raises(UsageError, match=r"12 blocks\) is 0"):
        make_freezer(FreezeSpec("auto", alpha=0.05, every=1, unit="block"), blocks)


def test_the_series_declared_and_recorded():
    """auto with the cache: frozen layers (int), the norms at the decision's row only, the cache's hits (taken, so
    the next row starts at 0) and bytes; fixed without the cache declares the frozen count alone. Mutations
    caught: a series missing or misnamed, the norms written on every row, hits not taken."""
    from mpi4py import MPI

    from bench.measure.recorder import Recorder
    from bench.strategies.freeze_cache import ActivationCache
    from bench.workload.models import build, layers_of

    layers = layers_of(build("mlp", (1, 8, 8), 10, 0))
    rec = Recorder(MPI.COMM_SELF, 3)
    freezer = Freezer(FreezeSpec("auto", alpha=0.5, every=1), layers)
    freezer.cache = ActivationCache([1, 1, 1], type("L", (), {"y": np.zeros(4)})(), 100)
    freezer.declare(rec, True)
    assert set(rec.series) == {"freeze/frozen_layers", "freeze/grad_norm", "freeze/cache_hits", "freeze/cache_bytes"}
    assert rec["freeze/frozen_layers"].dtype == np.int64 and rec["freeze/grad_norm"].shape == (3, 3)
    freezer.norms, freezer.norms_at = np.array([1.0, 2.0, 3.0]), 1
    freezer.cache.hits = 5
    for row in range(3):
        freezer.record(rec, row, row)
    assert rec["freeze/frozen_layers"].tolist() == [0, 1, 2]
    assert rec["freeze/grad_norm"].tolist() == [[0, 0, 0], [1, 2, 3], [0, 0, 0]]
    assert rec["freeze/cache_hits"].tolist() == [5, 0, 0] and rec["freeze/cache_bytes"].tolist() == [0, 0, 0]
    plain = Recorder(MPI.COMM_SELF, 3)
    Freezer(FreezeSpec("fixed", layers=1, at_step=1), layers).declare(plain, False)
    assert list(plain.series) == ["freeze/frozen_layers"]


def test_no_freeze_point_after_the_last_step_and_none_on_a_one_layer_model():
    """A 10-step run, auto every 5: rows 4 (step 5) is a freeze point, row 9 (the last step) is not, though 10 is a
    multiple of 5; every step of a 4-step run but the last; a 1-layer model cannot freeze, a 2-layer one can.
    Mutations caught: a decision (and a rebuild) after the last step, or none after the one before it; the layer
    bound off by one."""
    from bench.runtime.errors import UsageError
    from bench.strategies.freezing import make_freezer
    from bench.workload.models import build, layers_of

    freezer = make_freezer(FreezeSpec("auto", alpha=0.5, every=5), layers_of(build("mlp", (1, 8, 8), 10, 0)), 10)
    assert [row for row in range(10) if freezer.due(row)] == [4]
    every_step = make_freezer(FreezeSpec("auto", alpha=0.5, every=1), layers_of(build("mlp", (1, 8, 8), 10, 0)), 4)
    assert [row for row in range(4) if every_step.due(row)] == [0, 1, 2]  # not after row 3, the last
    assert make_freezer(FreezeSpec("fixed", layers=1, at_step=1), layers_of(build("mlp", (1, 8, 8), 10, 0))[:2], 4)
    with pytest.raises(UsageError, match="has 1 layer;"):
        make_freezer(FreezeSpec("auto", alpha=0.9, every=5), layers_of(build("logreg", (1, 8, 8), 10, 0)), 10)

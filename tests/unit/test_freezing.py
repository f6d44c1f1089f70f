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


def test_a_block_norm_joins_its_layers_squares():
    """resnet20 in blocks: conv1 and bn1 have norm 2.05, blocks.0's four layers 1.02 each (its norm sqrt(4 x
    1.02^2) = 2.04, the least), every other layer 5: freeze conv1, bn1 and blocks.0 = 6 layers. Mutation caught:
    the layers' norms doubled instead of squared (blocks.0 then 2.86: conv1 would be the least)."""
    from bench.workload.models import build, layers_of

    layers = layers_of(build("resnet20", (3, 8, 8), 10, 0))
    for i, layer in enumerate(layers):
        norm = 2.05 if i < 2 else 1.02 if i < 6 else 5.0
        count = sum(p.numel() for p in layer.params)
        for p in layer.params:
            p.grad = torch.full(p.shape, norm / count**0.5)
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
    assert (
        "2 of 3 layers frozen at the end, the first from step 3" in out and "3.000 at step 1, 1.000 at the last" in out
    )
    hits, held = np.array([[0, 0, 3, 8], [0, 0, 2, 7]]), np.array([[0, 0, 2**20, 2**21], [0, 0, 2**20, 3 * 2**20]])
    print_freezing({"freeze/frozen_layers": np.array([[0, 0, 2, 2]] * 2), "timing/comm_bytes": sent,
                    "freeze/cache_hits": hits, "freeze/cache_bytes": held})  # fmt: skip
    assert "20 samples' prefix output reused, all ranks (15 at the last step); 3.00 MiB held" in capsys.readouterr().out
    print_freezing({"freeze/frozen_layers": np.zeros((2, 4), int), "timing/comm_bytes": sent})
    assert "no layer frozen" in capsys.readouterr().out
    print_freezing({"timing/comm_bytes": sent})
    assert capsys.readouterr().out == ""

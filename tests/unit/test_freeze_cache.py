"""Activation caching for a frozen prefix (bench/strategies/freeze_cache.py) and the models' stages
(bench/workload/stages.py): stage sizes counted by hand, the stages against each model's forward written out here
from its modules, and cached forward passes against the same model recomputing its prefix (a copy with no cache,
its frozen BatchNorm put in eval mode by torch's own ``Module.eval``)."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from bench.strategies.freeze_cache import ActivationCache  # noqa: E402
from bench.strategies.freezing import Freezer, FreezeSpec  # noqa: E402
from bench.workload import models  # noqa: E402
from bench.workload.loader import PartitionLoader  # noqa: E402
from bench.workload.stages import Stage, stage_layer_counts  # noqa: E402


@pytest.mark.parametrize(
    "name, shape, counts",
    [
        ("mlp", (1, 8, 8), [1, 1, 1]),
        ("cnn", (1, 8, 8), [1, 1, 1, 1]),
        ("resnet20", (3, 8, 8), [2] + [4] * 9 + [1]),  # conv1+bn1; 9 blocks of conv, bn, conv, bn; fc
        ("transformer", (1, 8, 8), [1, 1, 6, 6, 2]),  # embed; pos; 2 blocks (2 norms, qkv, proj, fc1, fc2); norm+head
        ("logreg", (1, 8, 8), [1]),
        ("lstm", (1, 1, 12), [1, 1, 1, 1]),
    ],
)
def test_stage_sizes_by_hand(name, shape, counts):
    """Mutation caught: a stage that leaves out a module (a layer in no stage) or takes one of the next stage's."""
    model = models.build(name, shape, 10, 0)
    assert stage_layer_counts(model.stages(), models.layers_of(model)) == counts


def test_stages_that_miss_or_share_a_layer_are_refused():
    model = models.build("cnn", (1, 8, 8), 10, 0)
    layers = models.layers_of(model)
    with pytest.raises(ValueError, match="in no stage"):
        stage_layer_counts([Stage(model.conv1, (model.conv1,))], layers)
    both = (model.conv1, model.conv2, model.fc1, model.fc2)
    with pytest.raises(ValueError, match="stages 0 and 1"):
        stage_layer_counts([Stage(model.conv1, both), Stage(model.conv2, both)], layers)


def resnet20_by_hand(m, x):
    x = F.relu(m.bn1(m.conv1(x)))
    for block in m.blocks:
        out = F.relu(block.bn1(block.conv1(x)))
        out = block.bn2(block.conv2(out))
        short = x[:, :, :: block.stride, :: block.stride] if block.stride > 1 else x
        if block.pad:
            short = F.pad(short, (0, 0, 0, 0, block.pad // 2, block.pad - block.pad // 2))
        x = F.relu(out + short)
    return m.fc(x.mean(dim=(2, 3)))


def transformer_by_hand(m, x):
    b, c, h, w = x.shape
    z = m.embed(x.permute(0, 2, 1, 3).reshape(b, h, c * w)) + m.pos.weight
    for blk in m.blocks:
        z = z + blk.attn(blk.norm1(z))
        z = z + blk.fc2(F.gelu(blk.fc1(blk.norm2(z))))
    return m.head(m.norm(z).mean(dim=1))


@pytest.mark.parametrize("name, by_hand", [("resnet20", resnet20_by_hand), ("transformer", transformer_by_hand)])
def test_the_stages_compose_the_forward_pass(name, by_hand):
    """Mutation caught: a stage dropped, repeated or out of order in a model's list."""
    torch.manual_seed(1)
    model = models.build(name, (3, 8, 8), 10, 0)
    x = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(model(x), by_hand(model, x), rtol=1e-5, atol=1e-6)


def freeze_with_cache(model, frozen: int, loader, bound_bytes: int) -> Freezer:
    freezer = Freezer(FreezeSpec("auto", alpha=0.5, every=1), models.layers_of(model))
    freezer.keep_activations(model, loader, bound_bytes)
    freezer.freeze_to(frozen)
    return freezer


def loader_of(shape, samples=20, batch=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, *shape)).astype(np.float32)
    return PartitionLoader(x, rng.integers(0, 10, samples), batch, seed, 0, torch.device("cpu"))


@pytest.mark.parametrize("name, shape, frozen", [("cnn", (1, 8, 8), 2), ("resnet20", (3, 8, 8), 7)])
def test_a_cached_forward_equals_the_recomputed_one_and_counts_its_hits(name, shape, frozen):
    """Three epochs of a 20-sample partition in batches of 6 (18 drawn per epoch): the cached model's output equals a
    copy's that recomputes the prefix (resnet20: stem and first block cached, their BatchNorm in eval mode, the
    second block's frozen conv1, bn1 and conv2 recomputed in training mode); the hits are the drawn samples that
    were drawn before. Mutations caught: a sample's row looked up under another sample, rows kept but not marked,
    the frozen BatchNorm left in training mode (its batch statistics change with the batch)."""
    model = models.build(name, shape, 10, 0)
    reference = copy.deepcopy(model)
    for layer in models.layers_of(reference)[:frozen]:
        layer.module.requires_grad_(False)
    if name == "cnn":
        cached_stages = [reference.conv1, reference.conv2]
    else:
        cached_stages = [reference.conv1, reference.bn1, reference.blocks[0]]
    loader = loader_of(shape)
    cache = freeze_with_cache(model, frozen, loader, 2**30).cache
    assert cache.boundary == 2
    seen, hits = set(), []
    for _ in range(9):
        x, _ = loader.next()
        for module in cached_stages:
            module.eval()
        expected = reference(x)
        reference.train()
        torch.testing.assert_close(model(x), expected, rtol=1e-6, atol=1e-6)
        hits.append(cache.take_hits())
        assert hits[-1] == len(seen & set(loader.samples.tolist()))
        seen |= set(loader.samples.tolist())
    assert sum(hits) > 0 and cache.kept == len(seen)


def test_the_bound_keeps_the_first_samples_and_recomputes_the_rest():
    """cnn's second stage gives 64 x 2 x 2 float32 per sample (1 KiB); a bound of 5 KiB keeps the first 5 samples
    drawn. Mutation caught: the bound ignored, or counted in samples instead of bytes."""
    model = models.build("cnn", (1, 8, 8), 10, 0)
    loader = loader_of((1, 8, 8))
    cache = freeze_with_cache(model, 2, loader, 5 * 1024 + 100).cache
    first = None
    for _ in range(6):
        x, _ = loader.next()
        first = loader.samples[:5].tolist() if first is None else first
        model(x)
        hits = cache.take_hits()
        if loader.epoch >= 1:
            assert hits == len(set(first) & set(loader.samples.tolist()))
    assert cache.kept == 5 and cache.nbytes == 5 * 64 * 2 * 2 * 4


def test_a_moved_boundary_starts_again_and_no_stage_no_cache():
    """Freezing more layers within the same stages keeps the cache; past the next stage boundary it starts again.
    A frozen prefix shorter than the first stage caches nothing; eval mode never reads the cache."""
    model = models.build("resnet20", (3, 8, 8), 10, 0)
    loader = loader_of((3, 8, 8))
    freezer = freeze_with_cache(model, 1, loader, 2**30)
    assert freezer.cache.boundary == 0
    freezer.freeze_to(2)
    model(loader.next()[0])
    assert freezer.cache.boundary == 1 and freezer.cache.kept == 6
    freezer.freeze_to(5)
    assert freezer.cache.boundary == 1 and freezer.cache.kept == 6
    freezer.freeze_to(6)
    assert freezer.cache.boundary == 2 and freezer.cache.kept == 0 and freezer.cache.nbytes == 0
    model.eval()
    model(loader.next()[0])
    assert freezer.cache.kept == 0


def test_a_batch_that_is_not_the_last_drawn_is_refused():
    model = models.build("cnn", (1, 8, 8), 10, 0)
    loader = loader_of((1, 8, 8))
    freeze_with_cache(model, 2, loader, 2**30)
    loader.next()
    with pytest.raises(RuntimeError, match="not the 6 samples last drawn"):
        model(torch.zeros(4, 1, 8, 8))


def test_the_cache_is_built_on_the_loaders_partition():
    cache = ActivationCache([1, 1, 1, 1], loader_of((1, 8, 8), samples=13), 100)
    assert len(cache.slot) == 13 and cache.nbytes == 0


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(freeze_cache=True), "it needs --freeze"),
        (dict(freeze="fixed:1@2", freeze_cache_mb=5.0), "applies to --freeze-cache"),
        (dict(freeze="fixed:1@2", freeze_cache=True, freeze_cache_mb=-1.0), "freeze-cache-mb"),
        (dict(freeze="fixed:1@2", freeze_every=3), "--freeze-every applies to --freeze auto"),
        (dict(freeze="fixed:1@10"), "not before the last step"),
        (dict(freeze="auto:0.5", freeze_every=10), "no freeze point before the last step"),
        (dict(freeze="fixed:1@2", compress="topk:0.1"), "does not combine with --compress"),
        (dict(freeze="fixed:1@2", strategy="localsgd", outer_momentum=0.5), "SlowMo"),
        (dict(freeze="auto:0.5", freeze_every=3, strategy="ps"), "ps takes --freeze fixed:K@STEP"),
        (dict(freeze="fixed:1@2", strategy="ps", ps_mode="async"), "with --ps-mode sync only"),
    ],
)
def test_freezing_options_that_cannot_work_are_refused(options, message):
    from bench.config import Config, validate
    from bench.runtime.errors import UsageError

    with pytest.raises(UsageError, match=message):
        validate(Config(**({"strategy": "ring", "steps": 10} | options)))


def test_a_cache_with_freezing_is_accepted():
    from bench.config import Config, validate

    validate(Config(strategy="localsgd", steps=10, freeze="fixed:1@2", freeze_cache=True, freeze_cache_mb=0.0))


def test_hits_add_up_over_micro_batches_and_the_last_stage_is_never_cached():
    """Two batches drawn (as --accumulate-steps draws them) before the hits are taken: both batches' hits count.
    transformer (stages of 1, 1, 6, 6, 2 layers) with 15 of 16 layers frozen: the head's norm is frozen but not its
    linear layer, so 4 stages are cached, not 5. Mutations caught: hits overwritten per batch, the last-stage bound
    off by one."""
    model = models.build("cnn", (1, 8, 8), 10, 0)
    loader = loader_of((1, 8, 8), samples=12, batch=6)
    cache = freeze_with_cache(model, 2, loader, 2**30).cache
    for _ in range(2):
        model(loader.next()[0])
    cache.take_hits()
    for _ in range(2):
        model(loader.next()[0])
    assert cache.take_hits() == 12
    transformer = models.build("transformer", (1, 8, 8), 10, 0)
    assert freeze_with_cache(transformer, 15, loader_of((1, 8, 8)), 2**30).cache.boundary == 4


def test_a_cache_no_fixed_prefix_could_fill_is_refused_and_a_zero_bound_keeps_nothing():
    """resnet20's first stage is conv1 + bn1: --freeze fixed:1 with --freeze-cache would never cache, so it is
    refused naming the stage; fixed:2 is accepted. A bound of 0 B (or under one sample) keeps no row and serves no
    hit, and its memory reads 0. Mutations caught: the refusal's bound off by one, the memory read from a row of an
    empty store (an IndexError)."""
    from bench.runtime.errors import UsageError

    model = models.build("resnet20", (3, 8, 8), 10, 0)
    layers = models.layers_of(model)
    with pytest.raises(UsageError, match=r"first stage holds 2 layers \(conv1, bn1\).*freeze at least 2 "):
        Freezer(FreezeSpec("fixed", layers=1, at_step=1), layers).keep_activations(model, loader_of((3, 8, 8)), 1)
    Freezer(FreezeSpec("fixed", layers=2, at_step=1), layers).keep_activations(model, loader_of((3, 8, 8)), 1)
    model = models.build("cnn", (1, 8, 8), 10, 0)
    loader = loader_of((1, 8, 8))
    cache = freeze_with_cache(model, 2, loader, 0).cache
    for _ in range(6):
        model(loader.next()[0])
    assert cache.kept == 0 and cache.take_hits() == 0 and cache.nbytes == 0

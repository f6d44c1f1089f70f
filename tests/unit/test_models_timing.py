import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.comm.staging import bucket_groups
from bench.measure.timing import CpuClock, LayerTimer
from bench.workload import models

TOKENS = {"lstm"}  # models that read token sequences (1, 1, T), not images


def sample_input(name: str, n: int, image: tuple) -> tuple[tuple, torch.Tensor]:
    """(shape, a batch) the model reads: images, or token ids as floats for the sequence models."""
    if name in TOKENS:
        return (1, 1, 12), torch.randint(0, 10, (n, 1, 1, 12)).float()
    return image, torch.randn(n, *image)


@pytest.mark.parametrize("name", list(models.MODEL_CLASSES))
def test_layer_lists_cover_all_parameters(name):
    model = models.build(name, sample_input(name, 1, (3, 32, 32))[0], 10, seed=0)
    layers = models.layers_of(model)
    assert sum(layer.numel for layer in layers) == sum(p.numel() for p in model.parameters())
    assert len({layer.name for layer in layers}) == len(layers)
    assert [layer.index for layer in layers] == list(range(len(layers)))


def test_layer_names_and_sizes():
    cnn = models.layers_of(models.build("cnn", (1, 28, 28), 10, 0))
    assert [layer.name for layer in cnn] == ["conv1", "conv2", "fc1", "fc2"]
    # FedAvg CNN on MNIST: 1,663,370 parameters (McMahan et al. 2017)
    assert sum(layer.numel for layer in cnn) == 1_663_370
    resnet = models.build("resnet20", (3, 32, 32), 10, 0)
    assert 0.26e6 < sum(p.numel() for p in resnet.parameters()) < 0.28e6


def test_same_seed_same_weights():
    a, b = models.build("mlp", (1, 8, 8), 10, 3), models.build("mlp", (1, 8, 8), 10, 3)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("partition", [True, False], ids=["root-partition", "per-module"])
@pytest.mark.parametrize("name", list(models.MODEL_CLASSES))
def test_layer_timer_measures_every_layer(name, partition):
    torch.manual_seed(0)
    shape, x = sample_input(name, 16, (1, 8, 8))
    model = models.build(name, shape, 10, 0)
    layers = models.layers_of(model)
    timer = LayerTimer(layers, CpuClock(), root=model if partition else None)
    fwd, bwd = np.zeros(len(layers)), np.zeros(len(layers))
    y = torch.randint(0, 10, (16,))
    t = time.perf_counter()
    out = model(x)
    forward_wall = time.perf_counter() - t
    loss = F.cross_entropy(out, y)
    timer.start_backward()
    loss.backward()
    timer.collect(fwd, bwd)
    assert (fwd > 0).all(), fwd
    assert (bwd > 0).all(), bwd
    assert fwd.sum() <= forward_wall  # a partition of (part of) the forward pass, never more
    if partition:
        assert fwd.sum() > 0.5 * forward_wall  # the layers' gaps cover most of it
    timer.remove()


def test_bucket_groups_backward_order_and_cover():
    model = models.build("resnet20", (3, 32, 32), 10, 0)
    layers = models.layers_of(model)
    assert bucket_groups(layers, 0)[0] == (len(layers) - 1,)
    groups = bucket_groups(layers, 0.05)
    flat = [i for g in groups for i in g]
    assert flat == list(reversed(range(len(layers))))
    assert len(groups) < len(layers)


@pytest.mark.parametrize("partition", [True, False], ids=["root-partition", "per-module"])
def test_layer_timer_changes_nothing_and_removes_cleanly(partition):
    """The forward wrappers must not change outputs or gradients, and ``remove`` must leave every module as it
    was (no instance ``forward`` left behind; a module's own instance ``forward`` restored)."""
    torch.manual_seed(0)
    model = models.build("resnet20", (1, 8, 8), 10, 0)
    layers = models.layers_of(model)
    own = layers[0].module.forward  # a pre-existing instance attribute must survive
    layers[0].module.forward = own
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))

    def run():
        model.zero_grad(set_to_none=True)
        out = model(x)
        F.cross_entropy(out, y).backward()
        return out.detach().clone(), [p.grad.clone() for p in model.parameters()]

    plain_out, plain_grads = run()
    timer = LayerTimer(layers, CpuClock(), root=model if partition else None)
    timed_out, timed_grads = run()
    timer.remove()
    assert torch.equal(plain_out, timed_out)
    assert all(torch.equal(a, b) for a, b in zip(plain_grads, timed_grads))
    assert layers[0].module.__dict__["forward"] is own
    assert all("forward" not in layer.module.__dict__ for layer in layers[1:])
    assert "forward" not in model.__dict__

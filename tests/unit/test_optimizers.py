"""LARS and LAMB against hand-computed updates (trust ratio, exclusions of biases and norms), the learning-rate
schedules at given steps, and the options' refusals."""

import types

import numpy as np
import pytest
import torch

from bench.workload.layerwise import LAMB, LARS
from bench.workload.optim import make_optimizer, scheduled_lr, set_lr


def params(weight, bias, grad_w, grad_b):
    w = torch.nn.Parameter(torch.tensor(weight, dtype=torch.float64))
    b = torch.nn.Parameter(torch.tensor(bias, dtype=torch.float64))
    w.grad, b.grad = torch.tensor(grad_w, dtype=torch.float64), torch.tensor(grad_b, dtype=torch.float64)
    return w, b


def test_lars_takes_the_layer_trust_ratio_and_leaves_biases_plain():
    w, b = params([[3.0, 4.0]], [1.0], [[0.6, 0.8]], [2.0])  # ||w|| = 5, ||g|| = 1
    opt = LARS([w, b], lr=0.5, momentum=0.9, weight_decay=0.1, trust=0.01)
    opt.step()
    local = 0.01 * 5 / (1 + 0.1 * 5)
    first = 0.5 * local * np.array([0.6 + 0.3, 0.8 + 0.4])
    assert np.allclose(w.detach().numpy(), [[3 - first[0], 4 - first[1]]])
    assert np.allclose(b.detach().numpy(), [1.0 - 0.5 * 2.0])  # no trust ratio, no weight decay
    w0 = w.detach().numpy().copy()
    opt.step()  # same gradient: v = 0.9 v + new update
    norm = np.linalg.norm(w0)
    second = 0.5 * (0.01 * norm / (1 + 0.1 * norm)) * (np.array([0.6, 0.8]) + 0.1 * w0[0])
    assert np.allclose(w.detach().numpy()[0], w0[0] - (0.9 * first + second))


def test_lamb_first_step_is_the_trust_scaled_adam_direction():
    w, b = params([[3.0, 4.0]], [1.0], [[0.6, -0.8]], [2.0])
    opt = LAMB([w, b], lr=0.1, weight_decay=0.01)
    opt.step()
    g = np.array([0.6, -0.8])
    r = g / (np.abs(g) + 1e-6)  # first step: m_hat = g, v_hat = g^2
    u = r + 0.01 * np.array([3.0, 4.0])
    expected = np.array([3.0, 4.0]) - 0.1 * (5.0 / np.linalg.norm(u)) * u
    assert np.allclose(w.detach().numpy()[0], expected)
    assert np.allclose(b.detach().numpy(), [1.0 - 0.1 * 2.0 / (2.0 + 1e-6)])  # plain Adam direction


def test_a_zero_tensor_takes_ratio_one():
    w, b = params([[0.0, 0.0]], [0.0], [[1.0, 1.0]], [0.0])
    LARS([w, b], lr=0.1, trust=0.5).step()  # ||w|| = 0: local lr 1 (a fresh zero layer still moves)
    assert np.allclose(w.detach().numpy(), [[-0.1, -0.1]])


def test_schedules_at_given_steps():
    cfg = types.SimpleNamespace(lr=0.8, lr_warmup_steps=4, lr_schedule="constant")
    assert [scheduled_lr(cfg, t, 100) for t in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8])
    step = types.SimpleNamespace(lr=1.0, lr_warmup_steps=0, lr_schedule="step")
    assert [scheduled_lr(step, t, 100) for t in (49, 50, 74, 75, 99)] == pytest.approx([1, 0.1, 0.1, 0.01, 0.01])
    cosine = types.SimpleNamespace(lr=1.0, lr_warmup_steps=10, lr_schedule="cosine")
    assert scheduled_lr(cosine, 10, 110) == pytest.approx(1.0)
    assert scheduled_lr(cosine, 60, 110) == pytest.approx(0.5) and scheduled_lr(cosine, 110, 110) == pytest.approx(0)


def test_a_constant_schedule_keeps_the_rate_exactly():
    cfg = types.SimpleNamespace(lr=0.1, momentum=0.0, weight_decay=0.0, optimizer="sgd")
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(2))], cfg)
    set_lr(opt, types.SimpleNamespace(lr=0.1), 7, 10)
    assert opt.param_groups[0]["lr"] == 0.1 and isinstance(opt, torch.optim.SGD)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"strategy": "fedavg", "fl_algorithm": "fednova", "optimizer": "adam"}, "SGD at a fixed rate"),
        ({"lr_warmup_steps": -1}, "--lr-warmup-steps must be >= 0"),
        ({"optimizer": "rmsprop"}, "unknown optimizer"),
        ({"accumulate_steps": 0}, "--accumulate-steps must be positive"),
        ({"accumulate_steps": 2, "trace": True}, "one forward and backward pass per step"),
    ],
)
def test_optimizer_option_checks(options, message):
    from bench.config import Config, validate
    from bench.runtime.errors import UsageError

    with pytest.raises(UsageError, match=message):
        validate(Config(**options))


def test_accumulation_multiplies_the_batch_per_update():
    """--accumulate-steps K: a rank's batch per update is K micro-batches of --batch-size; --global-batch-size
    stays the batch of one update over all ranks (throughput counts samples per update)."""
    from bench.config import Config

    assert Config(batch_size=8, accumulate_steps=4).per_rank_batch(2) == 32
    assert Config(global_batch_size=64, accumulate_steps=4).per_rank_batch(2) == 32
    assert Config(batch_size=8).per_rank_batch(2) == 8

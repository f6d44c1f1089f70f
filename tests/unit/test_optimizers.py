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


def test_lars_with_weight_decay_and_a_zero_gradient_takes_ratio_one():
    """LARC / timm: the trust ratio is 1 where ||g|| = 0, so the step is lr x beta w (the formula alone would give
    eta / beta = 0.1 here, a step ten times smaller). Catches a ratio that tests ||w|| only."""
    w, b = params([[3.0, 4.0]], [1.0], [[0.0, 0.0]], [0.0])
    LARS([w, b], lr=0.5, momentum=0.9, weight_decay=0.1, trust=0.01).step()
    assert np.allclose(w.detach().numpy(), [[3.0 - 0.5 * 0.1 * 3.0, 4.0 - 0.5 * 0.1 * 4.0]], rtol=0, atol=1e-12)


def lamb_reference(w, grads, lr, decay, b1=0.9, b2=0.999, eps=1e-6):
    """LAMB (You et al., ICLR 2020, Algorithm 2) in plain numpy: m_t = b1 m + (1 - b1) g, v_t = b2 v + (1 - b2) g^2,
    m_hat = m_t / (1 - b1^t), v_hat = v_t / (1 - b2^t), r = m_hat / (sqrt(v_hat) + eps), u = r + lambda w,
    w <- w - lr ||w|| / ||u|| u (matrices); vectors take w <- w - lr r."""
    w, m, v, out = np.array(w, dtype=np.float64), 0.0, 0.0, []
    for t, g in enumerate(grads, start=1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        r = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        if w.ndim > 1:
            u = r + decay * w
            w = w - lr * np.linalg.norm(w) / np.linalg.norm(u) * u
        else:
            w = w - lr * r
        out.append(w.copy())
    return out


def test_lamb_over_three_steps_matches_the_paper_equations():
    """Three steps with different gradients: the bias corrections (1 - beta^t), the moments' decay and the trust
    ratio all act from step 2 on (a correction without its exponent is exact at t = 1 only)."""
    rng = np.random.default_rng(0)
    w0, b0 = rng.standard_normal((3, 4)), rng.standard_normal(3)
    gw, gb = [rng.standard_normal((3, 4)) for _ in range(3)], [rng.standard_normal(3) for _ in range(3)]
    w, b = params(w0, b0, gw[0], gb[0])
    opt = LAMB([w, b], lr=0.05, weight_decay=0.01)
    expect_w, expect_b = lamb_reference(w0, gw, 0.05, 0.01), lamb_reference(b0, gb, 0.05, 0.01)
    for t in range(3):
        w.grad, b.grad = torch.tensor(gw[t]), torch.tensor(gb[t])
        opt.step()
        assert np.allclose(w.detach().numpy(), expect_w[t], rtol=1e-12, atol=1e-12)
        assert np.allclose(b.detach().numpy(), expect_b[t], rtol=1e-12, atol=1e-12)


def test_schedules_at_given_steps():
    cfg = types.SimpleNamespace(lr=0.8, lr_warmup_steps=4, lr_schedule="constant")
    assert [scheduled_lr(cfg, t, 100) for t in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8])
    step = types.SimpleNamespace(lr=1.0, lr_warmup_steps=0, lr_schedule="step")
    assert [scheduled_lr(step, t, 100) for t in (49, 50, 74, 75, 99)] == pytest.approx([1, 0.1, 0.1, 0.01, 0.01])
    # an odd total: milestones floor(101 / 2) = 50 and floor(3 x 101 / 4) = 75 (ceil would give 51 and 76)
    assert [scheduled_lr(step, t, 101) for t in (49, 50, 74, 75)] == pytest.approx([1, 0.1, 0.1, 0.01])
    cosine = types.SimpleNamespace(lr=1.0, lr_warmup_steps=10, lr_schedule="cosine")
    assert scheduled_lr(cosine, 10, 110) == pytest.approx(1.0)
    assert scheduled_lr(cosine, 60, 110) == pytest.approx(0.5) and scheduled_lr(cosine, 110, 110) == pytest.approx(0)
    # a quarter of the way: (1 + cos(pi / 4)) / 2, by hand 0.853553...
    assert scheduled_lr(cosine, 35, 110) == pytest.approx(0.8535533905932737, rel=1e-12)
    # warm-up as long as the run: the cosine's span is clamped to one step instead of dividing by zero
    assert scheduled_lr(types.SimpleNamespace(lr=1.0, lr_warmup_steps=4, lr_schedule="cosine"), 4, 4) == 1.0


def test_set_lr_writes_the_scheduled_rate_into_every_group():
    """The optimizer starts at --lr; set_lr must overwrite every group's rate with the schedule's value at the
    step of the run's total (a set_lr that does nothing would leave 0.4 everywhere)."""
    cfg = types.SimpleNamespace(lr=0.4, momentum=0.0, weight_decay=0.0, optimizer="sgd", lr_warmup_steps=4,
                                lr_schedule="cosine")  # fmt: skip
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(2))], cfg)
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))]})
    # warm-up 0.1, 0.3; then the cosine over the 8 steps after warm-up: at step 8, half-way, 0.4 x 0.5
    for step, expected in [(0, 0.1), (2, 0.3), (4, 0.4), (8, 0.2)]:
        set_lr(opt, cfg, step, 12)
        assert [group["lr"] for group in opt.param_groups] == pytest.approx([expected, expected], rel=1e-12)
    opt.param_groups[0]["lr"] = 123.0
    set_lr(opt, types.SimpleNamespace(lr=0.1, lr_warmup_steps=0, lr_schedule="constant"), 7, 10)
    assert [group["lr"] for group in opt.param_groups] == [0.1, 0.1]  # constant: exactly --lr again


def test_lars_and_lamb_defaults_are_the_papers():
    """Without options: no weight decay, LARS trust 1e-3 and no momentum, LAMB betas 0.9 / 0.999 and eps 1e-6."""
    p = [torch.nn.Parameter(torch.zeros(2))]
    lars, lamb = LARS(p, lr=0.1).defaults, LAMB(p, lr=0.1).defaults
    assert (lars["weight_decay"], lars["trust"], lars["momentum"]) == (0.0, 1e-3, 0.0)
    assert (lamb["weight_decay"], lamb["betas"], lamb["eps"]) == (0.0, (0.9, 0.999), 1e-6)


@pytest.mark.parametrize(
    "kind, cls, expected",
    [
        ("sgd", torch.optim.SGD, {"lr": 0.3, "momentum": 0.7, "weight_decay": 0.01}),
        ("adam", torch.optim.Adam, {"lr": 0.3, "weight_decay": 0.01, "betas": (0.9, 0.999)}),
        ("lars", LARS, {"lr": 0.3, "momentum": 0.7, "weight_decay": 0.01, "trust": 0.02}),
        ("lamb", LAMB, {"lr": 0.3, "weight_decay": 0.01, "betas": (0.9, 0.999), "eps": 1e-6}),
    ],
)
def test_make_optimizer_passes_every_option_through(kind, cls, expected):
    cfg = types.SimpleNamespace(optimizer=kind, lr=0.3, momentum=0.7, weight_decay=0.01, trust_coefficient=0.02)
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(2))], cfg)
    assert type(opt) is cls
    assert {key: opt.param_groups[0][key] for key in expected} == expected


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


def test_trust_ratios_apply_below_norm_one_and_a_zero_update_moves_nothing():
    """LARS with ||w|| = 0.5 (< 1): local lr = 0.1 x 0.5 / (1 + 0) = 0.05, not the fallback 1. LAMB with a zero
    gradient and no decay: u = 0, so ||u|| = 0 and the ratio falls back to 1 on a zero update: w stays (no NaN)."""
    w, b = params([[0.3, 0.4]], [0.0], [[0.6, 0.8]], [0.0])  # ||w|| = 0.5, ||g|| = 1
    LARS([w, b], lr=1.0, trust=0.1).step()
    assert np.allclose(w.detach().numpy(), [[0.3 - 0.05 * 0.6, 0.4 - 0.05 * 0.8]], rtol=0, atol=1e-12)
    w, b = params([[3.0, 4.0]], [1.0], [[0.0, 0.0]], [0.0])
    LAMB([w, b], lr=0.1).step()
    assert w.detach().numpy().tolist() == [[3.0, 4.0]] and b.detach().numpy().tolist() == [1.0]

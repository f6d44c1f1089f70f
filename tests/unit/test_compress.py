"""The compressors alone, against their definitions: round-trip bounds, exact k, unbiasedness and the variance
bound, the error-feedback telescoping identity, PowerSGD's exactness on low-rank matrices, and wire sizes."""

import math

import numpy as np
import pytest

from bench.compress import error_feedback_on, parse
from bench.compress.feedback import ErrorFeedback
from bench.compress.methods import BFloat16, Float16
from bench.compress.powersgd import PowerSGDAverage
from bench.compress.quantize import QSGD_BUCKET


def gradient(n=3000, seed=0):
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def roundtrip(spec, x, seed=0):
    c = parse(spec)
    payload = c.compress(x, np.random.default_rng(seed))
    assert payload.dtype == np.uint8 and payload.ndim == 1
    return payload, c.decompress(payload, x.size)


@pytest.mark.parametrize("spec, bound", [("fp16", 2.0**-11), ("bf16", 2.0**-8)])
def test_half_types_round_within_their_unit_roundoff(spec, bound):
    x = gradient() * 10
    payload, y = roundtrip(spec, x)
    assert payload.nbytes == 2 * x.size
    assert np.all(np.abs(y - x) <= bound * np.abs(x) + 1e-30)
    assert not np.array_equal(y, x)  # it does round


def test_bf16_is_float32_truncated_with_round_to_nearest_even():
    x = np.array([1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, -2.5, 3.0e38], dtype=np.float32)
    y = BFloat16.from_bits(BFloat16.to_bits(x))
    assert y.tolist() == [1.0, 1.0, 1.0 + 4 * 2**-8, -2.5, np.float32(BFloat16.from_bits(BFloat16.to_bits(x))[4])]
    assert abs(y[4] / x[4] - 1) < 2**-8
    a, b = BFloat16.to_bits(gradient(50, 1)), BFloat16.to_bits(gradient(50, 2))
    out = np.empty_like(a)
    BFloat16.add(a, b, out=out)
    assert np.array_equal(out, BFloat16.to_bits(BFloat16.from_bits(a) + BFloat16.from_bits(b)))
    Float16.add(np.float16([1, 2]), np.float16([3, 4]), out=(h := np.empty(2, np.float16)))
    assert h.tolist() == [4, 6]


@pytest.mark.parametrize("ratio", [0.01, 0.1, 1.0])
def test_topk_sends_exactly_the_k_largest_magnitudes(ratio):
    x = gradient()
    payload, y = roundtrip(f"topk:{ratio}", x)
    k = math.ceil(ratio * x.size)
    assert payload.nbytes == 8 * k and np.count_nonzero(y) == k
    largest = np.sort(np.argsort(-np.abs(x))[:k])
    assert np.array_equal(np.flatnonzero(y), largest) and np.array_equal(y[largest], x[largest])


def test_randk_sends_k_entries_unchanged_and_draws_from_the_generator():
    x = gradient()
    payload, y = roundtrip("randk:0.05", x, seed=1)
    kept = np.flatnonzero(y)
    assert payload.nbytes == 8 * 150 and kept.size == 150 and np.array_equal(y[kept], x[kept])
    assert not np.array_equal(kept, np.flatnonzero(roundtrip("randk:0.05", x, seed=2)[1]))


def test_qsgd_is_unbiased_and_within_its_variance_bound():
    """Alistarh et al. 2017, Lemma 3.1: E[Q(v)] = v, E||Q(v) - v||^2 <= min(d / s^2, sqrt(d) / s) ||v||^2 per
    bucket of d entries. 4000 draws: the mean is within 5 standard errors of v in every coordinate, the standard
    error from the rounding's own variance ((||v|| / s)^2 f (1 - f), f the fractional part of s |v_i| / ||v||)."""
    s, x = 4, gradient(2 * QSGD_BUCKET + 100)
    c, rng = parse(f"qsgd:{s}"), np.random.default_rng(0)
    draws = np.stack([c.decompress(c.compress(x, rng), x.size) for _ in range(4000)])
    norms = np.repeat([np.linalg.norm(x[lo : lo + QSGD_BUCKET]) for lo in range(0, x.size, QSGD_BUCKET)], QSGD_BUCKET)
    scaled = s * np.abs(x) / norms[: x.size]
    frac = scaled - np.floor(scaled)
    stderr = norms[: x.size] / s * np.sqrt(frac * (1 - frac)) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - x) <= 5 * stderr + 1e-6)
    for lo in range(0, x.size, QSGD_BUCKET):
        v, q = x[lo : lo + QSGD_BUCKET], draws[:, lo : lo + QSGD_BUCKET]
        d = v.size
        bound = min(d / s**2, math.sqrt(d) / s) * float(v @ v)
        assert ((q - v) ** 2).sum(axis=1).mean() <= bound
    buckets = math.ceil(x.size / QSGD_BUCKET)
    assert c.compress(x, rng).nbytes == 4 * buckets + x.size  # a float32 norm per bucket, an int8 level per entry


def test_sign_sends_one_bit_per_entry_and_the_mean_magnitude():
    x = gradient(1001)
    payload, y = roundtrip("sign", x)
    assert payload.nbytes == 4 + math.ceil(1001 / 8)
    assert np.allclose(np.abs(y), np.abs(x).mean()) and np.array_equal(y >= 0, x >= 0)


@pytest.mark.parametrize("spec", ["topk:0.01", "randk:0.05", "sign", "qsgd:16"])
def test_error_feedback_telescopes(spec):
    """sum over steps of the decompressed payloads + the final residual == sum of the inputs."""
    c, rng = parse(spec), np.random.default_rng(0)
    ef = ErrorFeedback(c, enabled=True)
    inputs = [gradient(500, seed=t) for t in range(20)]
    sent = sum(c.decompress(ef.compress(x, key=0, draw=rng), x.size).astype(np.float64) for x in inputs)
    owed = ef.memory[0].astype(np.float64)
    assert np.allclose(sent + owed, np.sum(inputs, axis=0, dtype=np.float64), atol=1e-5 * max(1.0, np.abs(owed).max()))
    assert ef.residual_norm() > 0


def test_error_feedback_is_on_by_default_for_the_biased_methods_only():
    on = {spec: error_feedback_on(parse(spec), "auto") for spec in ("fp16", "bf16", "qsgd:4", "topk:0.1", "sign")}
    assert on == {"fp16": False, "bf16": False, "qsgd:4": False, "topk:0.1": True, "sign": True}
    assert error_feedback_on(parse("topk:0.1"), "off") is False and error_feedback_on(None, "on") is False


def test_powersgd_is_exact_on_matrices_of_rank_at_most_r():
    """One rank (the all-reduce is the identity): P = M Q spans M's columns when rank(M) <= r, so P P^T M = M."""
    rng = np.random.default_rng(0)
    low = (rng.standard_normal((40, 2)) @ rng.standard_normal((2, 30))).astype(np.float32)
    bias = rng.standard_normal(40).astype(np.float32)
    average = PowerSGDAverage(2, [(40, 30), (40,)], seed=0, key=0, error_feedback=True)
    for _ in range(2):  # a cold and a warm-started step
        buf = np.concatenate([low.ravel(), bias])
        sizes = average(buf, lambda x, key: x, ranks=1)
        assert np.allclose(buf[:1200].reshape(40, 30), low, atol=1e-4) and np.array_equal(buf[1200:], bias)
        assert average.residual_norm_sq() < 1e-6
    assert sizes == [2 * 40 + 40, 2 * 30]  # P and the bias; then Q


def test_powersgd_error_feedback_keeps_what_a_rank_one_approximation_drops():
    rng = np.random.default_rng(1)
    full = rng.standard_normal((20, 20)).astype(np.float32)
    average = PowerSGDAverage(1, [(20, 20)], seed=0, key=0, error_feedback=True)
    buf = full.ravel().copy()
    average(buf, lambda x, key: x, ranks=1)
    assert (
        np.allclose(buf + average.memory, full.ravel(), atol=1e-5) and np.linalg.matrix_rank(buf.reshape(20, 20)) == 1
    )


@pytest.mark.parametrize("spec", ["zip", "topk", "topk:0", "topk:1.5", "qsgd:0", "powersgd:x", "sign:2"])
def test_bad_method_names_the_accepted_forms(spec):
    with pytest.raises(ValueError, match="expected one of none, fp16, bf16, topk:R"):
        parse(spec)


def test_upload_messages_round_trip_and_error_feedback_telescopes_per_client():
    """A client's upload: L lengths then L payloads; decoded onto the round's model it gives w + D(C(w_k - w)).
    Over rounds, one client's decoded deltas + its final memory add up to its true deltas."""
    from bench.compress.uploads import DeltaDecoder, DeltaEncoder, split

    topk = parse("topk:0.1")
    encoder, decoder = DeltaEncoder(topk, feedback=True, seed=0), DeltaDecoder(topk)
    start = [gradient(300, 1), gradient(40, 2)]
    true, sent = [np.zeros(300), np.zeros(40)], [np.zeros(300), np.zeros(40)]
    for round_ in range(5):
        model = [s + gradient(s.size, 10 + round_ + 7 * i) for i, s in enumerate(start)]
        message = encoder.encode(3, round_, model, start)
        assert [p.size for p in split(message, 2)] == [8 * 30, 8 * 4]
        assert DeltaEncoder.layer_bytes(message, 2).tolist() == [8 * 30 + 8, 8 * 4 + 8]
        out = [np.empty_like(s) for s in start]
        decoder.decode(message, start, out)
        for i in range(2):
            true[i] += model[i] - start[i]
            sent[i] += out[i] - start[i]
    for i in range(2):
        assert np.allclose(sent[i] + encoder.feedback.memory[(3, i)], true[i], atol=1e-4)

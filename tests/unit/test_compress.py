"""The compressors alone, against their definitions: round-trip bounds, exact k, unbiasedness and the variance
bound, the error-feedback telescoping identity, PowerSGD's exactness on low-rank matrices, and wire sizes."""

import math

import numpy as np
import pytest

from bench.compress import error_feedback_on, parse
from bench.compress.feedback import ErrorFeedback
from bench.compress.methods import BFloat16, Float16, payload_size
from bench.compress.powersgd import PowerSGDAverage
from bench.compress.quantize import QSGD_BUCKET
from tests.wire_reference import bf16_bits, decode_by_hand, payload_bytes


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


def bf16_value(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def test_bf16_is_float32_truncated_with_round_to_nearest_even():
    """Against the bit formula in plain numpy: hand cases (exact, a tie to even below, a tie to even above, a
    negative, near float32's maximum) and 10,000 random values over 40 binades."""
    x = np.array([1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, -2.5, 3.0e38], dtype=np.float32)
    y = BFloat16.from_bits(BFloat16.to_bits(x))
    assert y[:4].tolist() == [1.0, 1.0, 1.0 + 4 * 2**-8, -2.5]  # 1 + 2^-8 ties down to 1, 1 + 3 2^-8 up to 1 + 2^-6
    assert np.array_equal(BFloat16.to_bits(x), bf16_bits(x))
    rng = np.random.default_rng(3)
    wide = (rng.standard_normal(10_000) * 2.0 ** rng.integers(-20, 20, 10_000)).astype(np.float32)
    assert np.array_equal(BFloat16.to_bits(wide), bf16_bits(wide))
    assert np.array_equal(BFloat16.from_bits(bf16_bits(wide)), bf16_value(bf16_bits(wide)))


def test_half_sums_round_the_float32_sum_once():
    """The ring adds wire values as an accelerator's bf16/fp16 all-reduce does: the exact sum of the two half
    values (exact in float32 here), rounded once to the wire type."""
    a, b = bf16_bits(gradient(500, 1)), bf16_bits(gradient(500, 2))
    out = np.empty_like(a)
    BFloat16.add(a, b, out=out)
    assert np.array_equal(out, bf16_bits(bf16_value(a) + bf16_value(b)))
    h16 = gradient(500, 3).astype(np.float16), gradient(500, 4).astype(np.float16)
    Float16.add(*h16, out=(h := np.empty(500, np.float16)))
    assert np.array_equal(h, (h16[0].astype(np.float32) + h16[1].astype(np.float32)).astype(np.float16))


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


class FixedDraw:
    """A stand-in generator whose uniform draws are given: makes QSGD's stochastic rounding a hand-computed case."""

    def __init__(self, first):
        self.first = np.asarray(first, dtype=np.float64)

    def random(self, shape):
        out = np.full(shape, 0.999)
        out.ravel()[: self.first.size] = self.first
        return out


def test_qsgd_rounds_a_hand_computed_bucket():
    """x = (1, -2, 2), ||x|| = 3, s = 4: s|x|/||x|| = (4/3, 8/3, 8/3), floors (1, 2, 2), fractions (1/3, 2/3, 2/3);
    uniforms (0.5, 0.5, 0.9) round up only the second (0.5 < 2/3): levels (1, 3, 2) times ||x|| / s = 0.75."""
    c = parse("qsgd:4")
    payload = c.compress(np.array([1.0, -2.0, 2.0], np.float32), FixedDraw([0.5, 0.5, 0.9]))
    assert payload[:4].view(np.float32)[0] == 3.0 and payload[4:].view(np.int8).tolist() == [1, -3, 2]
    assert c.decompress(payload, 3).tolist() == [0.75, -2.25, 1.5]


@pytest.mark.parametrize("levels, dtype", [(127, np.int8), (128, np.int16), (300, np.int16)])
def test_qsgd_levels_fit_their_wire_type(levels, dtype):
    """A one-hot bucket (|v_i| = ||v||) gives the top level s exactly: 127 fits int8, 128 needs int16 (2 bytes
    each; in int8 it would wrap to -128 and decode with the wrong sign)."""
    c = parse(f"qsgd:{levels}")
    x = np.zeros(600, np.float32)
    x[[3, 599]] = [-7.3, 0.5]  # one entry per bucket
    payload = c.compress(x, np.random.default_rng(0))
    assert payload.nbytes == 4 * 2 + np.dtype(dtype).itemsize * 600
    levels_sent = payload[8:].view(dtype)
    assert levels_sent[3] == -levels and np.abs(levels_sent).max() == levels
    assert np.allclose(c.decompress(payload, 600)[[3, 599]], [-7.3, 0.5], rtol=1e-6, atol=0)


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


def orthonormal_columns(p: np.ndarray) -> np.ndarray:
    """Gram-Schmidt, column by column (Vogels et al. 2019, Algorithm 1's orthogonalisation)."""
    q = np.array(p, dtype=np.float64)
    for j in range(q.shape[1]):
        for i in range(j):
            q[:, j] -= (q[:, i] @ q[:, j]) * q[:, i]
        q[:, j] /= np.linalg.norm(q[:, j])
    return q


def powersgd_reference(grads, q0):
    """PowerSGD in float64 from Vogels et al. 2019, Algorithm 1 (error feedback, warm start), W ranks' gradients
    per step: M_k = G_k + E_k; P = orth(mean_k M_k Q); Q = mean_k M_k^T P; approx = P Q^T; E_k = M_k - approx.
    Returns the approximation after each step. (P P^T does not depend on which orthonormal basis is chosen.)"""
    q, memories, out = np.array(q0, np.float64), [0.0] * len(grads[0]), []
    for step in grads:
        m = [g + e for g, e in zip(step, memories)]
        p = orthonormal_columns(np.mean([mk @ q for mk in m], axis=0))
        q = np.mean([mk.T @ p for mk in m], axis=0)
        approx = p @ q.T
        memories = [mk - approx for mk in m]
        out.append(approx)
    return out


def run_ranks_in_threads(averages, buffers, keys=None):
    """W PowerSGDAverage objects called at once, their all-reduce a sum across threads (as MPI's would be);
    ``keys`` collects the tags rank 0's all-reduces were called with. A buffer that is not float32 (what MPI sends)
    is an error; a barrier that waits 30 s breaks instead of hanging the test."""
    import threading

    barrier, shared, errors = threading.Barrier(len(averages), timeout=30), {}, []

    def allreduce(x, key, rank):
        if x.dtype != np.float32:
            errors.append(f"all-reduce of {x.dtype}")
        if rank == 0 and keys is not None:
            keys.append(key)
        shared[rank] = x.copy()
        barrier.wait()
        x[...] = np.sum([shared[r] for r in range(len(averages))], axis=0, dtype=np.float32)
        barrier.wait()

    def run(average, buf, rank):
        try:
            average(buf, lambda x, key: allreduce(x, key, rank), len(averages))
        except Exception as exc:  # noqa: BLE001 - reported below, on the test's thread
            errors.append(repr(exc))
            barrier.abort()

    threads = [threading.Thread(target=run, args=(a, b, r)) for r, (a, b) in enumerate(zip(averages, buffers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def test_powersgd_matches_algorithm_1_over_steps_and_ranks():
    """Two ranks, four steps, rank 2 on a 30 x 20 matrix beside a bias: the error memory, the warm-started Q and the
    mean over ranks all act from step 2 on; the bias is averaged uncompressed (and carries no memory). float32
    against float64: within 1e-4 relative to the values' scale."""
    rng = np.random.default_rng(1)
    grads = [[rng.standard_normal((30, 20)) for _ in range(2)] for _ in range(4)]
    biases = [[rng.standard_normal(30) for _ in range(2)] for _ in range(4)]
    averages = [PowerSGDAverage(2, [(30, 20), (30,)], seed=0, key=0, error_feedback=True) for _ in range(2)]
    expected = powersgd_reference(grads, averages[0].q[0])
    for step, bias, approx in zip(grads, biases, expected):
        buffers = [np.concatenate([g.ravel(), b]).astype(np.float32) for g, b in zip(step, bias)]
        run_ranks_in_threads(averages, buffers)
        for buf in buffers:
            assert np.allclose(buf[:600].reshape(30, 20), approx, rtol=0, atol=1e-4 * np.abs(approx).max())
            assert np.allclose(buf[600:], (bias[0] + bias[1]) / 2, rtol=0, atol=1e-6)


def test_powersgd_compresses_exactly_the_matrices_that_gain_and_averages_the_rest():
    """Rank 2, one bucket of six tensors: 6 x 5 (2 (6 + 5) = 22 < 30: compressed), a bias, a conv weight
    4 x 2 x 3 x 3 seen as 4 x 18 (44 < 72: compressed), 4 x 4 (16 = 16: no gain, dense), 1 x 50 (dense) and 5 x 8
    (26 < 40: compressed, the third, so every running offset is used). Two ranks, two steps: each compressed matrix
    is Algorithm 1 on its own (with its own seeded Q), every dense tensor the plain mean; the all-reduces carry
    12 + 8 + 10 + 3 + 16 + 50 = 99 and 10 + 36 + 16 = 62 floats, tagged 2 key and 2 key + 1."""
    shapes = [(6, 5), (3,), (4, 2, 3, 3), (4, 4), (1, 50), (5, 8)]
    sizes = [int(np.prod(s)) for s in shapes]
    offsets = np.cumsum([0] + sizes)
    rng = np.random.default_rng(5)
    steps = [[rng.standard_normal(offsets[-1]) for _ in range(2)] for _ in range(2)]
    averages = [PowerSGDAverage(2, shapes, seed=4, key=3, error_feedback=True) for _ in range(2)]
    compressed = {0: (6, 5), 2: (4, 18), 5: (5, 8)}
    expected = {i: powersgd_reference([[g[offsets[i] : offsets[i + 1]].reshape(nm) for g in step] for step in steps],
                                      averages[0].q[j]) for j, (i, nm) in enumerate(compressed.items())}  # fmt: skip
    for t, step in enumerate(steps):
        buffers, keys = [g.astype(np.float32) for g in step], []
        run_ranks_in_threads(averages, buffers, keys)
        assert keys == [6, 7]
        for i in range(len(shapes)):
            got = buffers[0][offsets[i] : offsets[i + 1]]
            assert np.array_equal(got, buffers[1][offsets[i] : offsets[i + 1]])
            if i in compressed:
                approx = expected[i][t].ravel()
                assert np.allclose(got, approx, rtol=0, atol=1e-4 * np.abs(approx).max()), (t, i)
            else:
                mean = (step[0][offsets[i] : offsets[i + 1]] + step[1][offsets[i] : offsets[i + 1]]) / 2
                assert np.allclose(got, mean, rtol=0, atol=1e-6), (t, i)
    assert (averages[0].p_len, averages[0].q_len) == (99, 62)
    memory = averages[0].memory
    assert memory.dtype == np.float32
    # n x m = 3 x 10 gains (2 (3 + 10) = 26 < 30), 10 x 3 too (the same factors), 3 x 4 does not (14 > 12)
    shapes = PowerSGDAverage(2, [(3, 10), (10, 3), (3, 4)], seed=0, key=0, error_feedback=True)
    assert shapes.matrices == [(0, 3, 10), (30, 10, 3)] and shapes.dense == [(60, 12)]
    assert averages[0].residual_norm_sq() == pytest.approx(float(memory.astype(np.float64) @ memory), rel=1e-6)
    assert memory[offsets[1] : offsets[2]].tolist() == [0.0] * 3  # dense tensors owe nothing


def test_powersgd_starts_from_the_seeded_gaussian_and_can_run_without_memory():
    """Q_0 of matrix j is the (seed, bucket key, j) stream's standard normal (m x r, float32): the same on every rank,
    different per matrix, bucket and seed. Without error feedback nothing is kept and the residual is 0."""
    from bench.workload.streams import Salt, stream

    make = lambda seed, key: PowerSGDAverage(2, [(6, 5), (8, 7)], seed=seed, key=key, error_feedback=False)  # noqa: E731
    a = make(1, 2)
    for j, m in enumerate((5, 7)):
        q = stream(1, 2, j, salt=Salt.COMPRESS).standard_normal((m, 2)).astype(np.float32)
        assert a.q[j].dtype == np.float32 and np.array_equal(a.q[j], q)
    assert not np.array_equal(make(1, 3).q[0], a.q[0]) and not np.array_equal(make(9, 2).q[0], a.q[0])
    buf = np.random.default_rng(0).standard_normal(86).astype(np.float32)
    a(buf, lambda x, key: x, ranks=1)
    assert a.memory is None and a.residual_norm_sq() == 0.0
    assert parse("powersgd:3").spec() == "powersgd:3" and parse("powersgd:3").rank == 3


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


CONTRACT_SPECS = ["fp16", "bf16", "topk:0.3", "topk:0.01", "randk:0.3", "randk:0.01", "qsgd:4", "qsgd:200", "sign"]


@pytest.mark.parametrize("spec", CONTRACT_SPECS)
@pytest.mark.parametrize("n", [0, 1, 7, 600, 1100])
def test_every_payload_is_its_wire_format(spec, n):
    """Each method at sizes 0 (an empty layer), 1, 7 (a partial byte of sign bits), 600 and 1100 (partial QSGD
    buckets), on values with exact zeros and negatives: the payload is flat uint8 of the documented size (also as
    payload_size reports it), decompress gives float32 of length n equal to the payload read by hand
    (tests/wire_reference.py), and the payload is a valid compression of the input."""
    x = gradient(n, seed=n) if n else np.zeros(0, np.float32)
    x[::5] = 0.0
    c = parse(spec)
    payload = c.compress(x, np.random.default_rng(0))
    assert payload.dtype == np.uint8 and payload.ndim == 1 and payload.nbytes == payload_bytes(spec, n)
    assert payload_size(c, n) == payload_bytes(spec, n)
    by_hand, valid = decode_by_hand(spec, payload, x)
    y = c.decompress(payload, n)
    assert valid and y.dtype == np.float32 and y.shape == (n,) and np.array_equal(y, by_hand)


def test_error_feedback_off_sends_the_input_unchanged_and_keeps_nothing():
    """Without error feedback the payload is the compressor's own on the input (hand-checked top-1: [3, 0, 0])."""
    ef = ErrorFeedback(parse("topk:0.1"), enabled=False)
    payload = ef.compress(np.array([3.0, 1.0, -2.0], np.float32), key=0)
    assert payload[:4].view(np.int32).tolist() == [0] and payload[4:].view(np.float32).tolist() == [3.0]
    assert ef.memory == {} and ef.residual_norm() == 0.0


def test_error_feedback_carries_what_top_1_drops_by_hand():
    """e_1 = [3, 1, -2] sends [3, 0, 0] and keeps [0, 1, -2]; x_2 = [0, 1.5, 0.5] gives e_2 = [0, 2.5, -1.5], which
    sends [0, 2.5, 0] and keeps [0, 0, -1.5] (Stich et al. 2018's memory)."""
    ef = ErrorFeedback(parse("topk:0.1"), enabled=True)
    ef.compress(np.array([3.0, 1.0, -2.0], np.float32), key="a")
    assert ef.memory["a"].tolist() == [0.0, 1.0, -2.0]
    payload = ef.compress(np.array([0.0, 1.5, 0.5], np.float32), key="a")
    assert payload[:4].view(np.int32).tolist() == [1] and payload[4:].view(np.float32).tolist() == [2.5]
    assert ef.memory["a"].tolist() == [0.0, 0.0, -1.5] and ef.residual_norm() == pytest.approx(1.5)


def test_parameter_server_pieces_round_trip_through_their_wire_buffers():
    """A worker encodes each shard piece on its own (error feedback per piece; random-k draws from (seed, worker
    rank, step, piece)); the server's byte buffers are sized by the wire format and decode into the gradient
    buffer's slices, as read by hand."""
    from bench.compress.pieces import PieceDecoder, PieceEncoder

    pieces = [(0, slice(0, 4)), (1, slice(4, 10))]
    values = gradient(10, seed=3)
    for spec in ("topk:0.5", "randk:0.5"):
        c = parse(spec)
        encoder, decoder = PieceEncoder(c, feedback=True, seed=1, rank=2), PieceDecoder(c, pieces)
        grad = np.full(10, np.nan, np.float32)
        wire = decoder.wire_for(grad)
        assert decoder.wire_for(grad) is wire and [w.size for w in wire] == [
            payload_bytes(spec, 4),
            payload_bytes(spec, 6),
        ]
        for i, (_, sl) in enumerate(pieces):
            wire[i][:] = encoder.encode(i, 7, values[sl])
        decoder.decode(grad)
        for i, (_, sl) in enumerate(pieces):
            by_hand, valid = decode_by_hand(spec, wire[i], values[sl])
            assert valid and np.array_equal(grad[sl], by_hand)
            assert np.allclose(encoder.feedback.memory[i], values[sl] - by_hand)  # kept per piece
    again = PieceEncoder(parse("randk:0.5"), feedback=False, seed=1, rank=2)
    other = PieceEncoder(parse("randk:0.5"), feedback=False, seed=1, rank=3)
    x = gradient(100, seed=4)
    assert np.array_equal(again.encode(0, 7, x), PieceEncoder(parse("randk:0.5"), False, 1, 2).encode(0, 7, x))
    assert not np.array_equal(again.encode(0, 7, x), other.encode(0, 7, x))
    assert not np.array_equal(again.encode(0, 7, x), again.encode(1, 7, x))
    assert not np.array_equal(again.encode(0, 7, x), again.encode(0, 8, x))


def test_qsgd_never_rounds_up_an_integral_level_and_sends_zero_buckets_as_zero():
    """x = (3, 4), ||x|| = 5, s = 5: s |x_i| / ||x|| = (3, 4) exactly, so the levels are 3 and 4 whatever the draw
    (even a uniform of exactly 0: rounding up needs u < 0); an all-zero bucket has norm 0 and levels 0."""
    c = parse("qsgd:5")
    payload = c.compress(np.array([3.0, 4.0], np.float32), FixedDraw([0.0, 0.0]))
    assert payload[4:].view(np.int8).tolist() == [3, 4]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0 / 0: a NaN level cast to int8 only happens to read 0 on some machines
        zeros = c.compress(np.zeros(600, np.float32), np.random.default_rng(0))
    assert zeros[:8].view(np.float32).tolist() == [0.0, 0.0] and not zeros[8:].any()
    assert not c.decompress(zeros, 600).any()

"""Each method's tensor form (``compress_tensor``, ``decompress_tensor``; --compress-on device) against its host
form: the same wire bytes, read back to the same vector by the host's decompress, on CPU tensors. QSGD draws its
own randomness on the device: checked against its definition (Alistarh et al. 2017) instead."""

import numpy as np
import pytest
import torch

from bench.compress import parse
from bench.compress.feedback import ErrorFeedback
from bench.compress.on_device import DeviceErrorFeedback

SIZES = [1, 7, 8, 9, 513, 4097]  # a bucket is never empty (a layer has parameters)
EXACT = ["fp16", "bf16", "topk:0.1", "topk:1", "randk:0.2", "sign"]


@pytest.mark.parametrize("spec", EXACT)
@pytest.mark.parametrize("n", SIZES)
def test_the_device_writes_the_hosts_wire_bytes(spec, n):
    """Mutations caught: top-k indices left unsorted, packbits' bit order reversed, the sign of zero, bf16 read
    as fp16, a payload part dropped."""
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    x[::5] = 0.0  # sign(0) is +, and ties in top-k's magnitudes
    method = parse(spec)
    host = method.compress(x, np.random.default_rng(9))
    device = method.compress_tensor(torch.from_numpy(x.copy()), np.random.default_rng(9))
    assert device.dtype == torch.uint8 and method.on_device
    if spec.startswith("topk") and spec != "topk:1":  # tied magnitudes: either of the tied entries is the top-k
        np.testing.assert_array_equal(np.abs(method.decompress(device.numpy(), n)), np.abs(method.decompress(host, n)))
    else:
        np.testing.assert_array_equal(device.numpy(), host)
    back = method.decompress_tensor(torch.from_numpy(host.copy()), n)
    np.testing.assert_array_equal(back.numpy(), method.decompress(host, n))


def test_sign_packs_bits_as_numpy_does():
    x = torch.tensor([1.0, -1.0, -2.0, 0.0, 3.0, -0.5, 1.0, 1.0, -1.0, 2.0])
    payload = parse("sign").compress_tensor(x).numpy()
    assert payload[4:].tolist() == [0b10011011, 0b01000000]
    assert payload[:4].view(np.float32)[0] == np.float32(12.5 / 10)


@pytest.mark.parametrize("levels", [1, 4, 127, 128])
def test_qsgd_on_the_device_is_unbiased_and_bounded(levels):
    """E[Q(v)] = v (their Lemma 3.1 (i)): over N = 2000 draws each entry's mean is within 3 step / sqrt(N) of v_i
    (step = ||v|| / s; Hoeffding: a miss has probability <= 2 exp(-18) per entry); |level| <= s; the wire is the
    host's (it decodes with the host's decompress, the level type by s); an all-zero bucket sends level 0."""
    n = 700
    x = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    x[512:] = 0.0  # the second bucket is all zero
    method = parse(f"qsgd:{levels}")
    t = torch.from_numpy(x)
    draws = np.random.default_rng(2)
    samples = np.stack([method.decompress(method.compress_tensor(t, draws).numpy(), n) for _ in range(2000)])
    payload = method.compress_tensor(t, draws).numpy()
    level = payload[8:].view(method.level_dtype)
    assert payload.size == 8 + n * np.dtype(method.level_dtype).itemsize
    assert np.abs(level).max() <= levels and not level[512:].any()
    again = [method.compress_tensor(t, np.random.default_rng(7)).numpy() for _ in range(2)]
    np.testing.assert_array_equal(again[0], again[1])  # its draws come from the call's stream, nothing global
    small = method.compress_tensor(t * 1e-3, np.random.default_rng(7)).numpy()  # a bucket norm below 1
    assert np.abs(small[8:].view(method.level_dtype)).max() <= levels and small[:4].view(np.float32)[0] < 1
    assert small[8:].view(method.level_dtype)[:512].any()  # quantised, not zeroed
    step = np.linalg.norm(x[:512]) / levels
    assert np.all(np.abs(samples.mean(axis=0, dtype=np.float64) - x) <= 3 * step / np.sqrt(len(samples)))


def test_error_feedback_on_the_device_keeps_what_the_host_keeps():
    """The telescoping identity of bench.compress.feedback, memories as tensors, equal to the host's memories."""
    method = parse("topk:0.05")
    host, device = ErrorFeedback(method, True), DeviceErrorFeedback(method, True)
    gen = np.random.default_rng(3)
    sent = np.zeros(300, np.float32)
    xs = [gen.standard_normal(300).astype(np.float32) for _ in range(5)]
    for x in xs:
        h = host.compress(x, 0)
        d = device.compress(torch.from_numpy(x.copy()), 0)
        np.testing.assert_array_equal(d.numpy(), h)
        sent += method.decompress(h, 300)
    np.testing.assert_array_equal(device.memory[0].numpy(), host.memory[0])
    np.testing.assert_allclose(sent + host.memory[0], np.sum(xs, axis=0), rtol=1e-5, atol=1e-5)
    assert device.residual_norm() == pytest.approx(host.residual_norm(), rel=1e-6)
    restored = DeviceErrorFeedback(method, True)
    restored.memory[0] = host.memory[0].copy()  # as a checkpoint restores them: numpy
    restored.memory[1] = host.memory[0].copy()
    x = xs[0]
    np.testing.assert_array_equal(restored.compress(torch.from_numpy(x.copy()), 0).numpy(), host.compress(x, 0))
    restored.residual_norm()  # bucket 1 still numpy (a resumed run recorded it before its first step: crashed)


class ThreeRankRing:
    """A stand-in for the ring and its all-gather, as if three ranks held the same bucket: the sum adds the buffer
    to itself twice with the given reduction, the all-gather returns the payload three times. Host and device
    averaging get the same stand-in, so their results must agree bit for bit."""

    def __init__(self):
        from mpi4py import MPI

        self.calls = []  # (what, key, path_bytes, dtype): the host and device paths must make the same calls
        from kernels.topology import Topology

        self.topology, self.comm = Topology.ring(0, 3), MPI.COMM_SELF  # the comm only gives the all-gather its tags

    def __call__(self, buf, key=0, add=np.add, path_bytes=None):
        self.calls.append(("allreduce", key, path_bytes, buf.dtype))
        once = buf.copy()
        for _ in range(2):
            add(buf, once, out=buf)
        return buf

    def elements_sent(self, n, itemsize=4, path_bytes=None):  # every argument shows in the count
        return 2 * 2 * n // 3 + 1000 * itemsize + (path_bytes if path_bytes is not None else -7)

    def gather(self, payload, key=0):
        self.calls.append(("gather", key, None, payload.dtype))
        return [payload.copy() for _ in range(3)], 2 * payload.nbytes


@pytest.mark.parametrize("feedback", [True, False])
@pytest.mark.parametrize("spec", ["fp16", "bf16", "topk:0.2", "randk:0.3", "sign"])
def test_device_averaging_gives_the_host_averagings_gradients_and_records(spec, feedback):
    """DeviceCompressedAveraging against CompressedAveraging over one stand-in ring: the gradients written back,
    the bytes recorded and the error-feedback residual, step after step. Mutations caught: the 1/p scale dropped or
    applied twice, the unpack skipped or shifted, a payload summed once, the error-feedback memory not kept."""
    from bench.comm.staging import HostStaging
    from bench.compress.exchange import CompressedAveraging
    from bench.compress.on_device import DeviceCompressedAveraging
    from bench.workload.models import build, layers_of

    results = []
    for kind in (CompressedAveraging, DeviceCompressedAveraging):
        model = build("cnn", (1, 6, 6), 10, 3)
        layers = layers_of(model)
        staging = HostStaging(layers, torch.device("cpu"), [(3,), (2,), (1, 0)])
        ring = ThreeRankRing()
        extra = (torch.device("cpu"),) if kind is DeviceCompressedAveraging else ()
        averaging = kind(staging, ring, parse(spec), feedback, 5, *extra)
        averaging.gather = ring.gather
        rec = {name: np.zeros((3, len(layers)), np.int64) for name in ("compress/sent_bytes", "compress/dense_bytes")}
        rec["compress/residual_norm"] = np.zeros(3)
        averaging.rec, averaging._shares = rec, [np.array([1.0]), np.array([1.0]), np.array([0.5, 0.5])]
        gen = torch.Generator().manual_seed(0)
        grads = []
        for step in range(3):
            averaging.step = step
            for p in model.parameters():
                p.grad = torch.randn(p.shape, generator=gen)
            sent = [averaging.average(g) for g in range(3)]
            grads.append(np.concatenate([p.grad.numpy().ravel() for p in model.parameters()]))
        results.append((np.stack(grads), sent, {k: v.copy() for k, v in rec.items()}, ring.calls))
    (host, host_sent, host_rec, host_calls), (device, device_sent, device_rec, device_calls) = results
    np.testing.assert_array_equal(device, host)
    assert device_sent == host_sent and device_calls == host_calls
    for name in host_rec:
        np.testing.assert_allclose(device_rec[name], host_rec[name], rtol=1e-6)

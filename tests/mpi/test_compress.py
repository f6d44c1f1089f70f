"""Compressed communication against MPI's own collectives and serial references: the point-to-point ring
all-gather of variable-length payloads against MPI's all-gather, the compressed averages against the mean of the
same payloads gathered by MPI (bit for bit) or a serial numpy PowerSGD, and replicas that stay identical."""

import numpy as np
import pytest
import torch
from mpi4py import MPI

from bench.comm.staging import HostStaging, bucket_groups
from bench.compress import parse
from bench.compress.exchange import CompressedAveraging
from bench.workload import models
from bench.workload.streams import Salt, stream
from kernels.ring_allgatherv import RingAllgatherv
from kernels.ring_allreduce import RingAllreduce
from kernels.topology import Topology
from tests.wire_reference import decode_by_hand

from .conftest import all_agree
from .test_overlap import trained_parameters
from .test_ring_training import make_cfg

COMM = MPI.COMM_WORLD


@pytest.mark.mpi
@pytest.mark.parametrize("lengths", ["random", "some-empty", "all-empty"])
def test_ring_allgatherv_equals_mpi_allgather(lengths):
    rank, size = COMM.rank, COMM.size
    rng = np.random.default_rng(rank + 17)
    n = {"random": int(rng.integers(1, 5000)), "some-empty": 0 if rank % 2 == 0 else 37, "all-empty": 0}[lengths]
    payload = rng.integers(0, 256, size=n, dtype=np.uint8)
    gather = RingAllgatherv(COMM, Topology.ring(rank, size))
    ours, sent = gather(payload, key=5)
    theirs = COMM.allgather(payload)  # MPI's all-gather (pickled payloads of any length)
    expected_sent = sum(theirs[(rank - s) % size].size + 8 for s in range(size - 1))
    assert all_agree(len(ours) == size and all(np.array_equal(a, b) for a, b in zip(ours, theirs)))
    assert all_agree(sent == expected_sent), (sent, expected_sent)


def staged_gradients(bucket_mb: float):
    """A small MLP's layers with a different random gradient on every rank, staged in buckets."""
    model = models.build("mlp", (1, 6, 6), 10, 3)
    layers = models.layers_of(model)
    rng = np.random.default_rng(COMM.rank)
    for p in model.parameters():
        p.grad = torch.from_numpy(rng.standard_normal(p.shape).astype(np.float32))
    staging = HostStaging(layers, torch.device("cpu"), bucket_groups(layers, bucket_mb))
    flat = np.concatenate([p.grad.numpy().ravel() for p in model.parameters()])
    return model, staging, flat


def averaged(spec: str, staging, feedback=False) -> tuple[np.ndarray, CompressedAveraging]:
    topo = Topology.ring(COMM.rank, COMM.size)
    average = CompressedAveraging(staging, RingAllreduce(COMM, topo), parse(spec), feedback, seed=0)
    for ex in average.exchanges():
        ex.run()
    grads = [p.grad.numpy().ravel() for layer in staging.layers for p in layer.params]
    return np.concatenate(grads), average


@pytest.mark.mpi
@pytest.mark.parametrize("spec", ["topk:0.05", "randk:0.1", "qsgd:8", "sign"])
def test_gathered_methods_average_the_payloads_mpi_gathers_bit_for_bit(spec):
    """Bucket by bucket: every rank's payload (gathered by MPI) is read by hand from its wire format (not by the
    compressor), checked against the method's definition on that rank's input, and the decoded values summed in
    rank order, / p. A compressor bug shared by every rank no longer cancels out."""
    _, staging, _ = staged_gradients(0.001)
    before = [staging.pack(g).copy() for g in range(len(staging.groups))]
    ours, average = averaged(spec, staging)
    expected, valid = [], True
    for g, x in enumerate(before):
        payload = average.compressor.compress(x, average._draw(g))
        total = np.zeros(x.size, np.float32)
        for theirs, their_x in zip(COMM.allgather(payload), COMM.allgather(x)):
            decoded, ok = decode_by_hand(spec, theirs, their_x)
            total += decoded
            valid &= ok
        expected.append(total * np.float32(1.0 / COMM.size))
    assert all_agree(valid and np.array_equal(ours, reorder(staging, expected)))


def reorder(staging, per_bucket: list[np.ndarray]) -> np.ndarray:
    """Bucket buffers (buckets run last layer first) back into parameter order."""
    pieces = {}
    for g, group in enumerate(staging.groups):
        at = 0
        for i in group:
            n = staging.layers[i].numel
            pieces[i] = per_bucket[g][at : at + n]
            at += n
    return np.concatenate([pieces[i] for i in range(len(staging.layers))])


@pytest.mark.mpi
@pytest.mark.parametrize("spec, tol", [("fp16", 2e-3), ("bf16", 2e-2)])
def test_half_types_average_like_mpi_allreduce_within_their_rounding(spec, tol):
    _, staging, flat = staged_gradients(0.0)
    ours, _ = averaged(spec, staging)
    mean = np.empty_like(flat)
    COMM.Allreduce(flat, mean)
    mean /= COMM.size
    assert all_agree(np.allclose(ours, mean, rtol=tol, atol=tol * np.abs(mean).max()))
    replicas = COMM.allgather(ours.tobytes())
    assert all_agree(all(r == replicas[0] for r in replicas))


@pytest.mark.mpi
def test_powersgd_equals_a_serial_numpy_powersgd_over_every_ranks_gradients():
    """Vogels et al. 2019, Algorithm 1 at step 0, serially, one bucket per layer: P = mean_i(M_i Q0),
    orthogonalised, Q = mean_i(M_i^T P), approximation P Q^T; vectors and small matrices averaged uncompressed."""
    _, staging, _ = staged_gradients(0.0)
    everyone = COMM.allgather([[p.grad.numpy().copy() for p in layer.params] for layer in staging.layers])
    ours, _ = averaged("powersgd:2", staging)
    expected = {}
    for g, (i,) in enumerate(staging.groups):
        matrix = 0  # index of the next compressed matrix in bucket g: its seeded starting Q
        for k, param in enumerate(staging.layers[i].params):
            mats = [grads[i][k].reshape(param.shape[0], -1) if param.dim() >= 2 else grads[i][k] for grads in everyone]
            n, m = mats[0].shape if param.dim() >= 2 else (0, 0)
            if n and 2 * (n + m) < n * m:
                q0 = stream(0, g, matrix, salt=Salt.COMPRESS).standard_normal((m, 2)).astype(np.float32)
                p = np.linalg.qr(np.mean([x @ q0 for x in mats], axis=0))[0]
                q = np.mean([x.T @ p for x in mats], axis=0)
                expected.setdefault(i, []).append((p @ q.T).ravel())
                matrix += 1
            else:
                expected.setdefault(i, []).append(np.mean(mats, axis=0).ravel())
    reference = np.concatenate([np.concatenate(expected[i]) for i in range(len(staging.layers))])
    assert all_agree(np.allclose(ours, reference, rtol=1e-4, atol=1e-5))


@pytest.mark.mpi
@pytest.mark.parametrize("spec", ["none", "fp16", "bf16", "topk:0.05", "randk:0.1", "qsgd:8", "sign", "powersgd:2"])
def test_compressed_ring_training_keeps_replicas_identical(shared_tmp, spec):
    kw = dict(model="cnn", momentum=0.9, bucket_mb=0.002, steps=4, compress=spec)
    params = trained_parameters(make_cfg(shared_tmp, **kw))
    replicas = COMM.allgather(params.tobytes())
    assert all_agree(all(r == replicas[0] for r in replicas)), f"--compress {spec}: replicas differ"
    if spec == "none":  # --compress none is the plain ring, bit for bit
        plain = trained_parameters(make_cfg(shared_tmp, model="cnn", momentum=0.9, bucket_mb=0.002, steps=4))
        assert all_agree(np.array_equal(params, plain))


@pytest.mark.mpi
@pytest.mark.parametrize("servers", [1, 2])
def test_lossless_compressed_pushes_give_the_uncompressed_parameter_server(shared_tmp, servers):
    """topk:1 sends every entry with its index: the lock-step servers decompress exactly the gradients they would
    have received, so the run is bit-identical to the uncompressed one (the event-driven servers' path: the smoke
    tests)."""
    if COMM.size <= servers:
        pytest.skip(f"{servers} server(s) and a worker")
    kw = dict(model="cnn", strategy="ps", servers=servers, momentum=0.9, steps=4)
    plain = trained_parameters(make_cfg(shared_tmp, **kw))
    lossless = trained_parameters(make_cfg(shared_tmp, compress="topk:1", **kw))
    worker = COMM.rank >= servers  # a server's model object is not what it trains
    assert all_agree(not worker or np.array_equal(plain, lossless)), "topk:1 pushes changed the parameter server"

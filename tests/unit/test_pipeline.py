"""Buckets in flight (bench.comm.pipeline) on CPU, against a model of asynchronous copies.

``LateCopies`` does what a copy stream does to the one who forgets to wait: a copy to the host lands only when
``host_ready`` is called for it, a copy back only at ``device_ready``. A schedule that reads a buffer before waiting
for it reads the previous step's contents, and one that never waits for the copies back leaves the gradients as
they were, so the results below come out wrong. The reference is numpy on the gradients themselves.
"""

import numpy as np
import pytest
import torch

from bench.comm.pipeline import BucketPipeline, HostCopies
from bench.comm.staging import HostStaging
from bench.workload.models import build, layers_of


class LateCopies(HostCopies):
    def __init__(self, staging):
        super().__init__(staging)
        self.to_host_pending: list[int] = []
        self.to_device_pending: list[int] = []
        self.log: list[tuple[str, int]] = []

    def to_host(self, g, grads):
        self.log.append(("to_host", g))
        self.to_host_pending.append((g, grads))

    def host_ready(self, g):
        grads = next((grads for h, grads in self.to_host_pending if h == g), None)
        assert grads is not None, f"waited for bucket {g}'s copy, never issued"
        self.log.append(("host_ready", g))
        self.to_host_pending.remove((g, grads))
        self.staging.pack(g, grads=grads)

    def to_device(self, g, grads):
        self.log.append(("to_device", g))
        self.to_device_pending.append((g, grads))

    def device_ready(self):
        self.log.append(("device_ready", -1))
        for g, grads in self.to_device_pending:
            self.staging.unpack(g, grads=grads)
        self.to_device_pending.clear()


def model_with_grads(seed: int):
    model = build("cnn", (1, 6, 6), 10, 3)
    layers = layers_of(model)
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen)
    return model, layers


def grads(model) -> np.ndarray:
    return np.concatenate([p.grad.numpy().ravel() for p in model.parameters()])


def run_step(pipeline, staging, order, ready=None):
    """Each bucket through the pipeline in ``order``, its buffer tripled on the host (the stand-in for a sum)."""
    for g in order:
        buf = pipeline.fetch(g, True, ready)
        buf *= 3.0
        pipeline.store(g, True)


@pytest.mark.parametrize("in_flight", [1, 2, 3, 99])
@pytest.mark.parametrize("order", ["forward", "reversed"])
def test_every_bucket_comes_back_reduced_with_late_copies(in_flight, order):
    """Mutations caught: fetch without host_ready (stale buffer: the first step reads zeros, later ones the
    step before's), store of the last bucket without device_ready (gradients unchanged), an issue that skips a
    bucket (host_ready asserts)."""
    model, layers = model_with_grads(0)
    staging = HostStaging(layers, torch.device("cpu"), [(3,), (2,), (1, 0)])
    sequence = [0, 1, 2] if order == "forward" else [2, 1, 0]
    copies = LateCopies(staging)
    pipeline = BucketPipeline(staging, copies, in_flight, sequence)
    for step in range(3):
        for p in model.parameters():  # a new step's gradients
            p.grad.add_(float(step))
        expected = 3.0 * grads(model)
        run_step(pipeline, staging, sequence)
        np.testing.assert_array_equal(grads(model), expected)
        assert not copies.to_host_pending and not copies.to_device_pending


@pytest.mark.parametrize("in_flight", [1, 2, 3])
def test_no_more_than_in_flight_copies_are_ahead_and_each_is_issued_once(in_flight):
    """Mutations caught: issuing every bucket at the first fetch, or one fewer than asked, or twice."""
    model, layers = model_with_grads(1)
    staging = HostStaging(layers, torch.device("cpu"), [(3,), (2,), (1,), (0,)])
    copies = LateCopies(staging)
    pipeline = BucketPipeline(staging, copies, in_flight)
    run_step(pipeline, staging, range(4))
    issued = [g for what, g in copies.log if what == "to_host"]
    assert issued == [0, 1, 2, 3]
    for g in range(4):  # when bucket g is awaited, exactly min(4, g + in_flight) copies have been issued
        at = copies.log.index(("host_ready", g))
        assert sum(what == "to_host" for what, _ in copies.log[:at]) == min(4, g + in_flight)
    assert copies.log[-1] == ("device_ready", -1)
    assert sum(what == "device_ready" for what, _ in copies.log) == 1


def test_a_bucket_not_ready_is_not_copied_ahead():
    """The overlapped backward pass: a bucket whose gradients have not all landed must wait for its turn.
    Mutation caught: ignoring ``ready``."""
    model, layers = model_with_grads(2)
    staging = HostStaging(layers, torch.device("cpu"), [(3,), (2,), (1,), (0,)])
    copies = LateCopies(staging)
    pipeline = BucketPipeline(staging, copies, 4)
    landed, gated = {0, 1}, []
    buf = pipeline.fetch(0, True, lambda h: h in landed, gated.append)
    assert [g for what, g in copies.log if what == "to_host"] == [0, 1]
    buf *= 3.0
    pipeline.store(0, True)
    landed |= {2, 3}
    for g in [1, 2, 3]:
        pipeline.fetch(g, True, lambda h: h in landed, gated.append)
        pipeline.store(g, True)
    assert [g for what, g in copies.log if what == "to_host"] == [0, 1, 2, 3]
    assert gated == [0, 1, 2, 3]  # each bucket's gate, once, before its copy (the overlap's CUDA event)


def test_parameters_go_through_the_pipeline_as_parameters():
    """localsgd averages parameters (grads=False) both ways. Mutation caught: the flag lost on the way to a copy."""
    model, layers = model_with_grads(5)
    staging = HostStaging(layers, torch.device("cpu"), [(3,), (2,), (1, 0)])
    pipeline = BucketPipeline(staging, LateCopies(staging), 2)
    params = np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])
    gradients = grads(model)
    for g in range(3):
        pipeline.fetch(g, False)[:] *= 3.0
        pipeline.store(g, False)
    np.testing.assert_array_equal(np.concatenate([p.detach().numpy().ravel() for p in model.parameters()]), 3 * params)
    np.testing.assert_array_equal(grads(model), gradients)


def test_in_flight_below_one_is_refused():
    model, layers = model_with_grads(3)
    staging = HostStaging(layers, torch.device("cpu"))
    with pytest.raises(ValueError, match="must be >= 1"):
        BucketPipeline(staging, HostCopies(staging), 0)


def test_the_bucket_fetched_is_copied_even_when_ready_says_no():
    """The communication thread clears a bucket's ready flag before it fetches it: the bucket's own copy must not
    depend on ``ready`` (only the copies ahead do). Mutation caught: issuing only through the look-ahead loop."""
    model, layers = model_with_grads(4)
    staging = HostStaging(layers, torch.device("cpu"), [(3,), (2,), (1, 0)])
    copies = LateCopies(staging)
    expected = 3.0 * grads(model)
    run_step(BucketPipeline(staging, copies, 2), staging, [0, 1, 2], ready=lambda h: False)
    np.testing.assert_array_equal(grads(model), expected)
    assert [g for what, g in copies.log if what == "to_host"] == [0, 1, 2]

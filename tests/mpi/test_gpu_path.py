"""--buckets-in-flight and --gpu-path on CPU: the same parameters, bit for bit, as the plain ring's schedule
(one bucket at a time through numpy host buffers), for ring (plain and --overlap, both progress modes) and localsgd.
The pipeline's order against late copies is in tests/unit/test_pipeline.py; on CUDA the copies are the GPU's own."""

import numpy as np
import pytest

from .conftest import all_agree
from .test_overlap import CUDA, trained_parameters
from .test_ring_training import make_cfg

PATHS = [(1, "host"), (3, "host"), (1, "device"), (4, "device")]


@pytest.mark.mpi
@pytest.mark.parametrize("in_flight, path", PATHS)
@pytest.mark.parametrize("strategy", ["ring", "localsgd"])
def test_every_path_trains_the_plain_schedules_parameters(shared_tmp, strategy, in_flight, path):
    kw = dict(model="cnn", momentum=0.9, bucket_mb=0.002, steps=4, strategy=strategy)
    kw |= dict(local_steps=2) if strategy == "localsgd" else {}
    plain = trained_parameters(make_cfg(shared_tmp, buckets_in_flight=1, gpu_path="host", **kw))
    other = trained_parameters(make_cfg(shared_tmp, buckets_in_flight=in_flight, gpu_path=path, **kw))
    assert all_agree(np.array_equal(plain, other)), f"{strategy} {path} path, {in_flight} in flight, differs"


@pytest.mark.mpi
@pytest.mark.parametrize("in_flight, path", PATHS)
@pytest.mark.parametrize("progress", ["thread", "hooks"])
def test_overlapped_buckets_in_flight_train_the_plain_schedules_parameters(shared_tmp, progress, in_flight, path):
    kw = dict(model="cnn", momentum=0.9, bucket_mb=0.002, steps=4)
    plain = trained_parameters(make_cfg(shared_tmp, buckets_in_flight=1, gpu_path="host", **kw))
    overlapped = trained_parameters(
        make_cfg(shared_tmp, overlap=True, overlap_progress=progress, buckets_in_flight=in_flight, gpu_path=path, **kw)
    )
    assert all_agree(np.array_equal(plain, overlapped)), f"--overlap ({progress}) {path}, {in_flight} differs"


@pytest.mark.mpi
@CUDA
@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("in_flight", [1, 4])
def test_buckets_in_flight_on_cuda_give_the_one_at_a_time_parameters(shared_tmp, overlap, in_flight):
    """The copy stream and its events: a copy read before its event, or an optimizer step before the copies back,
    changes the parameters (resnet20's kernels are long enough to race)."""
    import torch

    kw = dict(model="resnet20", synthetic_shape="3x32x32", batch_size=64, momentum=0.9, device="cuda")
    kw |= dict(bucket_mb=0.05, steps=4, gpu_path="host")
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    plain = trained_parameters(make_cfg(shared_tmp, buckets_in_flight=1, **kw))
    other = trained_parameters(make_cfg(shared_tmp, buckets_in_flight=in_flight, overlap=overlap, **kw))
    assert all_agree(np.array_equal(plain, other)), f"{in_flight} in flight (overlap {overlap}) differs on cuda"


@pytest.mark.mpi
@pytest.mark.parametrize("in_flight, path", PATHS[1:])
@pytest.mark.parametrize("overlap", [False, True])
def test_parameter_server_workers_train_the_plain_schedules_parameters(shared_tmp, overlap, in_flight, path):
    """Pushes copied ahead in push order, pulls copied back in layer order (the event-driven modes run the same
    worker code, PSWorker, at their own pace)."""
    from mpi4py import MPI

    if MPI.COMM_WORLD.size < 2:
        pytest.skip("ps needs a server and a worker")
    kw = dict(model="cnn", momentum=0.9, steps=4, strategy="ps", overlap=overlap)
    plain = trained_parameters(make_cfg(shared_tmp, buckets_in_flight=1, gpu_path="host", **kw))
    other = trained_parameters(make_cfg(shared_tmp, buckets_in_flight=in_flight, gpu_path=path, **kw))
    assert all_agree(np.array_equal(plain, other)), f"ps (overlap {overlap}) {path}, {in_flight} in flight, differs"

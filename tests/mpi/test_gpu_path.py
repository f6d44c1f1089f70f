"""--buckets-in-flight and --gpu-path on CPU: the same parameters, bit for bit, as the plain ring's schedule
(one bucket at a time through numpy host buffers), for ring (plain and --overlap, both progress modes) and localsgd.
The pipeline's order against late copies is in tests/unit/test_pipeline.py; on CUDA the copies are the GPU's own."""

import numpy as np
import pytest

from .conftest import all_agree
from .test_overlap import CUDA, trained_parameters
from .test_ring_training import make_cfg

PATHS = [(3, "host"), (1, "device"), (4, "device")]  # against (1, "host"), the plain schedule


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
@pytest.mark.parametrize("path", ["host", "device"])
@pytest.mark.parametrize("strategy", ["ring", "ps"])
def test_the_device_path_across_nodes_and_an_emulated_link(shared_tmp, strategy, path):
    """Messages between (virtual) nodes are counted and paced by the node-aware communicator, which must take tensor
    buffers too (it once sized them through memoryview, which a tensor buffer has not)."""
    from mpi4py import MPI

    if strategy == "ps" and MPI.COMM_WORLD.size < 2:
        pytest.skip("ps needs a server and a worker")
    kw = dict(model="cnn", steps=3, strategy=strategy, ranks_per_node=1, emulate_link="5,100")
    plain = trained_parameters(make_cfg(shared_tmp, gpu_path="host", **kw))
    other = trained_parameters(make_cfg(shared_tmp, gpu_path=path, buckets_in_flight=3, **kw))
    assert all_agree(np.array_equal(plain, other)), f"{strategy} {path} across nodes differs"


CUDA_RUNS = {  # each through the copy stream (CudaCopies) or the device's compression, against one at a time
    "ring-overlap": dict(overlap=True),
    "ring": {},
    "localsgd": dict(strategy="localsgd", local_steps=2),
    "ps": dict(strategy="ps"),
}


@pytest.mark.mpi
@CUDA
@pytest.mark.parametrize("run", list(CUDA_RUNS))
@pytest.mark.parametrize("in_flight", [1, 4])
def test_buckets_in_flight_on_cuda_give_the_one_at_a_time_parameters(shared_tmp, run, in_flight):
    """The copy stream and its events: a copy read before its event, or an optimizer step (or localsgd's next
    forward) before the copies back, changes the parameters (resnet20's kernels are long enough to race)."""
    import torch
    from mpi4py import MPI

    if run == "ps" and MPI.COMM_WORLD.size < 2:
        pytest.skip("ps needs a server and a worker")
    kw = dict(model="resnet20", synthetic_shape="3x32x32", batch_size=64, momentum=0.9, device="cuda")
    kw |= dict(bucket_mb=0.05, steps=4, gpu_path="host") | CUDA_RUNS[run]
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    plain = trained_parameters(make_cfg(shared_tmp, **(kw | dict(buckets_in_flight=1, overlap=False))))
    other = trained_parameters(make_cfg(shared_tmp, buckets_in_flight=in_flight, **kw))
    assert all_agree(np.array_equal(plain, other)), f"{run}, {in_flight} in flight, differs on cuda"


@pytest.mark.mpi
@CUDA
@pytest.mark.parametrize("method", ["fp16", "topk:0.1", "sign"])
def test_compressing_on_cuda_gives_the_hosts_parameters(shared_tmp, method):
    """--compress-on device on the GPU: the same wire bytes as the host's, so the same parameters."""
    import torch

    kw = dict(model="resnet20", synthetic_shape="3x32x32", batch_size=32, device="cuda", steps=3, compress=method)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    host = trained_parameters(make_cfg(shared_tmp, compress_on="host", **kw))
    device = trained_parameters(make_cfg(shared_tmp, compress_on="device", **kw))
    assert all_agree(np.array_equal(host, device)), f"{method} compressed on cuda differs from the host's"


@pytest.mark.mpi
@CUDA
def test_the_device_path_on_cuda_where_mpi_is_cuda_aware(shared_tmp):
    """MPI reading GPU memory (each addition waited for before the next message): the host path's parameters.
    Skipped where the MPI library is not CUDA-aware (the PyPI MPICH)."""
    import torch

    from bench.comm.cuda_aware import query_cuda_support

    if not query_cuda_support().answer:
        pytest.skip("this MPI library does not say it is CUDA-aware")
    kw = dict(model="resnet20", synthetic_shape="3x32x32", batch_size=32, device="cuda", steps=3, bucket_mb=0.05)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    host = trained_parameters(make_cfg(shared_tmp, gpu_path="host", **kw))
    device = trained_parameters(make_cfg(shared_tmp, gpu_path="device", **kw))
    assert all_agree(np.array_equal(host, device)), "the device path on cuda differs from the host path"


@pytest.mark.mpi
@pytest.mark.parametrize("in_flight, path", PATHS)
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


@pytest.mark.mpi
@pytest.mark.parametrize(
    "method, feedback", [("fp16", "auto"), ("fp16", "on"), ("bf16", "auto"), ("topk:0.1", "auto"),
                         ("randk:0.2", "auto"), ("sign", "auto"), ("sign", "off")],
)  # fmt: skip
def test_compressing_on_the_device_gives_the_hosts_parameters(shared_tmp, method, feedback):
    """--compress-on device on CPU tensors: the same wire bytes, sums in the same order, error-feedback memories
    updated alike, so the same parameters bit for bit (QSGD's device draws are another sample: tested apart)."""
    kw = dict(model="cnn", momentum=0.9, bucket_mb=0.002, steps=4, compress=method, error_feedback=feedback)
    host = trained_parameters(make_cfg(shared_tmp, compress_on="host", **kw))
    device = trained_parameters(make_cfg(shared_tmp, compress_on="device", **kw))
    assert all_agree(np.array_equal(host, device)), f"{method} on the device differs from the host's"


@pytest.mark.mpi
def test_qsgd_on_the_device_keeps_the_replicas_identical_and_near_the_host_run(shared_tmp):
    """Its own draws, so not the host's parameters: every rank ends with the same ones (the payloads are summed in
    the same ring order everywhere), and 4 steps of unbiased quantisation stay near the host run's."""
    from mpi4py import MPI

    kw = dict(model="cnn", bucket_mb=0.002, steps=4, compress="qsgd:64")
    host = trained_parameters(make_cfg(shared_tmp, compress_on="host", **kw))
    device = trained_parameters(make_cfg(shared_tmp, compress_on="device", **kw))
    replicas = MPI.COMM_WORLD.allgather(device.tobytes())
    assert all_agree(all(r == replicas[0] for r in replicas)), "qsgd on the device: the replicas differ"
    assert all_agree(np.abs(host - device).max() < 0.05 and not np.array_equal(host, device))

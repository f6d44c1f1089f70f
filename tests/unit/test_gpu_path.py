"""--gpu-path: the choice of path (bench.comm.cuda_aware), the tensor buffers the kernels take
(bench.comm.device_buffers), and the question put to the MPI library, each against an independent answer."""

import ctypes
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from mpi4py import MPI

from bench.comm.cuda_aware import (
    CudaSupport,
    choose_path,
    device_path_blocker,
    loaded_mpi_libraries,
    query_cuda_support,
)
from bench.comm.device_buffers import TensorBuffer
from bench.config import Config
from bench.runtime.errors import UsageError
from kernels.buffers import ScratchPool, check_buffer

YES, NO, UNKNOWN = CudaSupport(True, "t"), CudaSupport(False, "t"), CudaSupport(None, "t")


@pytest.mark.parametrize(
    "requested, device, support, expected",
    [
        ("auto", "cuda", YES, "device"),
        ("auto", "cuda", NO, "host"),
        ("auto", "cuda", UNKNOWN, "host"),
        ("auto", "cpu", YES, "host"),
        ("host", "cuda", YES, "host"),
        ("device", "cuda", YES, "device"),
        ("device", "cuda", UNKNOWN, "device"),  # at the user's word: the library does not say
        ("device", "cpu", NO, "device"),  # CPU: the tensors themselves, no CUDA involved
        ("device", "cuda", NO, "device"),  # at the user's word, with a warning (below)
    ],
)
def test_the_path_taken(requested, device, support, expected):
    assert choose_path(requested, device, support) == expected


def test_device_is_taken_at_the_users_word_with_a_warning_where_the_library_says_no():
    """Open MPI 5 may answer 0 before it has seen a device buffer: an explicit request wins, rank 0 warns."""
    from bench.comm.cuda_aware import GpuPath

    assert choose_path("device", "cuda", NO) == "device"
    assert "says it is not CUDA-aware" in GpuPath("device", NO).warning("cuda")
    assert GpuPath("device", YES).warning("cuda") == GpuPath("device", NO).warning("cpu") == ""
    assert GpuPath("host", NO).warning("cuda") == ""


def test_what_keeps_a_run_on_the_host():
    """auto falls back to host, device is refused, for each thing that still stages on the host."""
    assert device_path_blocker(Config(strategy="ring")) == ""
    assert device_path_blocker(Config(strategy="localsgd")) == ""  # plain averaging: on the device
    for cfg, why in [
        (Config(strategy="localsgd", outer_lr=0.5), "SlowMo"),
        (Config(strategy="ring", compress="fp16"), "--compress"),
        (Config(strategy="ring", allreduce="hierarchical"), "--allreduce hierarchical"),
        (Config(strategy="localsgd", outer_momentum=0.5), "SlowMo"),
    ]:
        assert why in device_path_blocker(cfg)
        assert choose_path("auto", "cuda", YES, device_path_blocker(cfg)) == "host"
        with pytest.raises(UsageError, match="--gpu-path device"):
            choose_path("device", "cuda", YES, device_path_blocker(cfg))


def test_the_library_is_found_in_a_maps_file(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f01 r-xp 00000000 08:01 1 /opt/mpi/lib/libmpi.so.40.30.0\n"
        "7f01-7f02 r--p 00000000 08:01 1 /opt/mpi/lib/libmpi.so.40.30.0\n"
        "7f02-7f03 r-xp 00000000 08:01 2 /usr/lib/libmpifort.so.12\n"
        "7f03-7f04 r-xp 00000000 08:01 3 /usr/lib/libc.so.6\n"
    )
    assert loaded_mpi_libraries(str(maps)) == ["/opt/mpi/lib/libmpi.so.40.30.0", "/usr/lib/libmpifort.so.12"]
    assert loaded_mpi_libraries(str(tmp_path / "absent")) == []


def test_the_answer_agrees_with_mpichs_other_query():
    """MPICH answers the same question a second way, MPIX_GPU_query_support(MPIX_GPU_SUPPORT_CUDA = 0, &flag)
    (mpi-ext.h of MPICH 4): the oracle for this library. Skipped where the library lacks that symbol."""
    support = query_cuda_support()
    libraries = loaded_mpi_libraries()
    gpu_query = next((getattr(ctypes.CDLL(p), "MPIX_GPU_query_support", None) for p in libraries), None)
    if gpu_query is None:
        pytest.skip(f"{MPI.Get_library_version().splitlines()[0]} has no MPIX_GPU_query_support")
    flag = ctypes.c_int(-1)
    assert gpu_query(0, ctypes.byref(flag)) == 0
    assert support.answer is bool(flag.value)
    assert "MPIX_Query_cuda_support" in support.source


def test_mpi4pys_own_query_is_asked_first_and_a_library_without_the_symbol_is_passed(monkeypatch, tmp_path):
    """A later mpi4py's MPI.Query_cuda_support() is taken as it answers; without it, libraries are tried in turn
    (a missing file, then one without the symbol, then libmpi). Mutation caught: stopping at the first miss."""
    monkeypatch.setattr(MPI, "Query_cuda_support", lambda: 1, raising=False)
    assert query_cuda_support([]) == CudaSupport(True, "mpi4py MPI.Query_cuda_support()")
    monkeypatch.delattr(MPI, "Query_cuda_support")
    libc = next(p for p in open("/proc/self/maps").read().split() if "/libc.so" in p or "/libc-" in p)
    libraries = loaded_mpi_libraries()
    found = query_cuda_support([str(tmp_path / "missing.so"), libc, *libraries])
    assert found == query_cuda_support(libraries) and found.source.endswith(Path(libraries[0]).name)


def test_no_symbol_means_unknown(tmp_path):
    libc = next(p for p in open("/proc/self/maps").read().split() if "/libc.so" in p or "/libc-" in p)
    assert query_cuda_support([libc]).answer is None
    assert query_cuda_support([str(tmp_path / "missing.so")]).answer is None


def test_a_tensor_buffer_adds_slices_and_makes_scratch_like_numpy():
    """np.add on tensor buffers is float32 addition, bit for bit numpy's (torch's own add, not numpy's, computes
    it: a mutation to anything else changes the bits on these random operands)."""
    gen = np.random.default_rng(0)
    a, b = gen.standard_normal(1000).astype(np.float32), gen.standard_normal(1000).astype(np.float32)
    ta, tb = TensorBuffer(torch.from_numpy(a.copy())), TensorBuffer(torch.from_numpy(b.copy()))
    out = np.add(ta[100:900], tb[100:900], out=ta[100:900])
    expected = a.copy()
    expected[100:900] += b[100:900]
    assert out.tensor.data_ptr() == ta.tensor.data_ptr() + 400
    np.testing.assert_array_equal(ta.numpy(), expected)
    assert (ta.size, ta.nbytes, ta.itemsize, ta.dtype, len(ta[3:10])) == (1000, 4000, 4, np.float32, 7)
    pool = ScratchPool()
    scratch = pool.like(ta, 10)
    assert isinstance(scratch, TensorBuffer) and scratch.size == 10 and scratch.dtype == np.float32
    assert pool.like(ta, 5).tensor.data_ptr() == scratch.tensor.data_ptr()  # reused, not reallocated
    assert pool.like(a, 5).dtype == np.float32 and isinstance(pool.like(a, 5), np.ndarray)
    with pytest.raises(TypeError):
        np.multiply(ta, tb, out=ta)


def test_kernels_take_tensor_buffers_and_refuse_other_objects():
    check_buffer(np.zeros(3, np.float32))
    check_buffer(TensorBuffer(torch.zeros(3)))
    for bad in (np.zeros((2, 2), np.float32), np.zeros(6, np.float32)[::2], torch.zeros(3), types.SimpleNamespace()):
        with pytest.raises(TypeError):
            check_buffer(bad)
    with pytest.raises(TypeError):
        TensorBuffer(torch.zeros(2, 2))


def test_mpi_moves_a_tensor_buffer_where_it_is():
    """mpi4py reads and writes the tensor's own memory (DLPack): what a CUDA-aware MPI does with device memory."""
    send = TensorBuffer(torch.arange(8, dtype=torch.float32))
    recv = TensorBuffer(torch.zeros(8))
    MPI.COMM_SELF.Sendrecv(send[2:6], 0, 7, recv[1:5], 0, 7)
    np.testing.assert_array_equal(recv.numpy(), [0, 2, 3, 4, 5, 0, 0, 0])


def test_the_gpu_benchmarks_plain_loop_times_a_training_step():
    """bench/perf/gpu.py's no-harness baseline: a positive median over the measured steps, and it trains (the
    parameters move)."""
    from bench.perf.gpu import plain_loop_step

    args = types.SimpleNamespace(device="cpu", steps=3)
    assert 0 < plain_loop_step("transformer", 4, args) < 10


def test_where_compression_runs():
    """--compress-on auto: the device on CUDA where the method has a device form; PowerSGD stays on the host."""
    from bench.compress.where import compress_place

    def place(device, **kw):
        cfg = Config(strategy="ring", **kw)
        return compress_place(cfg, cfg.exchange_compression, device)

    assert place("cuda", compress="fp16") == "device" and place("cpu", compress="fp16") == "host"
    assert place("cuda", compress="powersgd:2") == "host"
    assert place("cuda", compress="sign", compress_on="host") == "host"
    assert place("cpu", compress="sign", compress_on="device") == "device"


def test_the_path_recorded_for_a_cpu_run():
    """What strategy_info says (results/README.md): the library is not asked on CPU; in_place follows the path."""
    from bench.comm.cuda_aware import GpuPath
    from bench.comm.pipeline import HostCopies, InPlaceCopies, make_copies
    from bench.comm.staging import HostStaging
    from bench.workload.models import build, layers_of

    cfg = Config(strategy="ring", gpu_path="device", buckets_in_flight=3)
    path = GpuPath.choose(cfg, torch.device("cpu"))
    assert path.in_place and not GpuPath.choose(Config(strategy="ring"), torch.device("cpu")).in_place
    assert path.describe(cfg) == {
        "staging": "device",
        "gpu_path_requested": "device",
        "cuda_aware_mpi": "unknown",
        "cuda_aware_source": "not asked (--device cpu)",
        "buckets_in_flight": 3,
    }
    assert GpuPath("host", YES).describe(cfg, 1)["buckets_in_flight"] == 1  # what was in flight, not asked
    assert GpuPath("host", YES).describe(cfg)["cuda_aware_mpi"] == "yes"
    assert GpuPath("host", NO).describe(cfg)["cuda_aware_mpi"] == "no"
    with pytest.raises(UsageError, match="--compress"):
        GpuPath.choose(Config(strategy="ring", gpu_path="device", compress="fp16"), torch.device("cpu"))
    staging = HostStaging(layers_of(build("cnn", (1, 6, 6), 10, 3)), torch.device("cpu"), in_place=True)
    assert isinstance(staging.numpy[0], TensorBuffer) and isinstance(staging.flat, TensorBuffer)
    assert type(make_copies(staging, torch.device("cpu"))) is HostCopies
    assert type(make_copies(staging, torch.device("cpu"), in_place=True)) is InPlaceCopies

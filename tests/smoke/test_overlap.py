"""``ring --overlap`` and ``ddp`` as a user runs them: the summary and results file, and the hang a rank launching
its buckets in another order than its peers must become (the watchdog names it; never a silent hang)."""

import json
import time

import h5py
import pytest
import torch

from tests.helpers import bench

RUN = ["--model", "cnn", "--steps", "8", "--batch-size", "16", "--eval-every", "0", "--quiet"]


def test_overlapped_ring_and_ddp_say_how_much_communication_they_hid(tmp_path):
    for name, args in {"ring": ["--strategy", "ring", "--overlap"], "ddp": ["--strategy", "ddp"]}.items():
        out = tmp_path / f"{name}.h5"
        proc = bench(2, "train", *args, *RUN, "--bucket-mb", "0.01", "--out", str(out), timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "communication not overlapped" in proc.stdout and "  overlap  " in proc.stdout, proc.stdout
        with h5py.File(out) as f:
            assert f["timing/exposed"].shape == f["timing/comm"].shape and f.attrs["status"] == "complete"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_overlap_and_ddp_run_on_cuda(tmp_path):
    """The GPU path: CUDA events gate each bucket's copy to the host; ddp on NCCL where each rank has a GPU of its
    own, else gloo; the backend is recorded."""
    for name, args in {"ring": ["--strategy", "ring", "--overlap"], "ddp": ["--strategy", "ddp"]}.items():
        out = tmp_path / f"{name}.h5"
        proc = bench(2, "train", "--device", "cuda", *args, *RUN, "--bucket-mb", "0.01", "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        with h5py.File(out) as f:
            exposed, comm = f["timing/exposed"][()], f["timing/comm"][()]
            assert f.attrs["device"].startswith("cuda") and (exposed <= comm + 1e-7).all() and comm.sum() > 0
            if name == "ddp":
                assert json.loads(f.attrs["strategy_info"])["backend"] in ("nccl", "gloo")


def test_buckets_launched_in_another_order_on_one_rank_abort_the_job_naming_the_wait(tmp_path):
    """Rank 1 all-reduces its buckets in reversed order: the buckets' messages never match, and the watchdog ends
    the job after --timeout (catches: a communication thread taking buckets as they become ready, which could
    differ between ranks, would fail the same way; a kernel not keyed by bucket would silently mix buckets)."""
    args = ["--strategy", "ring", "--overlap", "--overlap-fault-rank", "1", "--timeout", "5", *RUN]
    t = time.monotonic()
    proc = bench(2, "train", *args, "--out", str(tmp_path / "h.h5"), timeout=120)
    assert proc.returncode != 0 and time.monotonic() - t < 45, proc.returncode
    assert "timed out after 5 s waiting in" in proc.stderr, proc.stderr
    assert "waiting for the overlapped buckets" in proc.stderr, proc.stderr


def test_overlap_is_a_ring_option():
    proc = bench(1, "train", "--strategy", "localsgd", "--overlap", "--steps", "2", "--quiet", timeout=60)
    assert proc.returncode == 2 and "--overlap" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_overlap_benchmark_prints_every_variant(tmp_path):
    """bench/perf/overlap.py end to end at a tiny size: every variant's row and the files kept for the cost model
    (timings are printed, not asserted)."""
    import subprocess
    import sys

    from bench.perf.overlap import VARIANTS

    cmd = [sys.executable, "-m", "bench.perf.overlap", "--ranks", "2", "--models", "cnn", "--steps", "4", "--repeats"]
    proc = subprocess.run([*cmd, "1", "--keep", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert all(f"  {variant:22s} " in proc.stdout for variant in VARIANTS), proc.stdout
    assert len(list(tmp_path.glob("cnn_2_*_0.h5"))) == len(VARIANTS)


def test_gpu_benchmark_runs_on_cpu_with_its_paths(tmp_path):
    """bench/perf/gpu.py end to end on CPU at a tiny size (a check of the script; its goals are a GPU's): the rows
    asked for with the path their buffers took, the extra buckets-in-flight row, none failed. (ps --overlap runs to
    its file in tests/mpi/test_train_command.py; ddp's launch in bench.perf.overlap's test above.)"""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "bench.perf.gpu", "--device", "cpu", "--ranks", "2", "--models", "transformer"]
    cmd += ["--batches", "4", "--steps", "3", "--variants", "ring", "ring --overlap", "--in-flight", "3"]
    proc = subprocess.run([*cmd, "--keep", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "failed" not in proc.stdout, proc.stdout
    rows = {line.split("  ")[1].strip(): line for line in proc.stdout.splitlines() if line.startswith("  ring")}
    assert set(rows) == {"ring", "ring --overlap", "ring --overlap, 3 in flight"}, proc.stdout
    assert rows["ring --overlap, 3 in flight"].endswith("host, 3 in flight") and rows["ring"].endswith("2 in flight")
    assert "  ddp " not in proc.stdout and len(list(tmp_path.glob("*.h5"))) == 3

"""``ring --overlap`` and ``ddp`` as a user runs them: the summary and results file, and the hang a rank launching
its buckets in another order than its peers must become (the watchdog names it; never a silent hang)."""

import time

import h5py

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

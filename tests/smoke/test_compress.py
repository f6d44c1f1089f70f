"""``--compress`` as a user runs it: the summary names the compression phase, the results file records the bytes
actually sent beside the dense ring's, and a bad method is one message and exit code 2."""

import json

import h5py

from tests.helpers import bench

RUN = ["--strategy", "ring", "--model", "cnn", "--steps", "6", "--batch-size", "16", "--eval-every", "0", "--quiet"]


def test_compressed_ring_records_bytes_sent_against_dense(tmp_path):
    out = tmp_path / "topk.h5"
    proc = bench(2, "train", *RUN, "--compress", "topk:0.01", "--out", str(out), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "compression" in proc.stdout, proc.stdout
    with h5py.File(out) as f:
        sent, dense = f["compress/sent_bytes"][()].sum(), f["compress/dense_bytes"][()].sum()
        assert sent == f["timing/comm_bytes"][()].sum()
        info = json.loads(f.attrs["strategy_info"])
        assert info["compress"] == "topk:0.01" and info["error_feedback"] is True
        assert 0 < sent <= 0.025 * dense  # 8 bytes per kept entry, 1 % kept, at 2 ranks
        assert (f["timing/compress"][()] > 0).any() and (f["compress/residual_norm"][()][:, 1:] > 0).all()


def test_bad_compression_method_is_one_message_and_exit_2(tmp_path):
    proc = bench(2, "train", *RUN, "--compress", "topk:5", "--out", str(tmp_path / "x.h5"), timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("expected one of none, fp16") == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_compression_benchmark_prints_a_row_per_method(tmp_path):
    """bench/perf/compression.py end to end at a tiny size (ring and fedavg; numbers printed, not asserted)."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "bench.perf.compression", "--ranks", "2", "--fedavg-ranks", "3", "--steps", "3"]
    cmd += ["--workloads", "cnn", "fedavg", "--methods", "none", "fp16", "powersgd:2", "--keep", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("  fp16 ") == 2 and proc.stdout.count("  powersgd:2 ") == 1, proc.stdout  # not fedavg
    assert len(list(tmp_path.glob("*.h5"))) == 5


def test_compressed_pushes_run_on_the_event_driven_servers(tmp_path):
    """ps async and ssp with compressed pushes (servers decode each piece as it lands): complete, and the pushed
    bytes are what the method sends (sign: 1 bit per entry + a scale per piece)."""
    for mode in ("async", "ssp"):
        out = tmp_path / f"{mode}.h5"
        args = ["--strategy", "ps", "--ps-mode", mode, *RUN[2:], "--compress", "sign", "--out", str(out)]
        proc = bench(3, "train", *args, timeout=120)
        assert proc.returncode == 0, proc.stderr
        with h5py.File(out) as f:
            sent, dense = f["compress/sent_bytes"][()].sum(), f["compress/dense_bytes"][()].sum()
            assert f.attrs["status"] == "complete" and 0 < sent < dense / 25, (sent, dense)

"""The compression benchmark as a user runs it. ``--compress`` in a run (the summary, the bytes sent beside the
dense ring's, a bad method's one message) is checked in tests/mpi/test_train_command.py and test_bad_input.py."""

import subprocess
import sys


def test_compression_benchmark_prints_a_row_per_method(tmp_path):
    """bench/perf/compression.py end to end at a tiny size (ring and fedavg; numbers printed, not asserted)."""
    cmd = [sys.executable, "-m", "bench.perf.compression", "--ranks", "2", "--fedavg-ranks", "3", "--steps", "3"]
    cmd += ["--workloads", "cnn", "fedavg", "--methods", "none", "fp16", "powersgd:2", "--keep", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("  fp16 ") == 2 and proc.stdout.count("  powersgd:2 ") == 1, proc.stdout  # not fedavg
    assert len(list(tmp_path.glob("*.h5"))) == 5

"""Issue 18's commands as a user runs them: the large-batch study at a tiny size, and the microbenchmark's
nccl-tests/OSU conventions (sizes with units, -m, -f, --full) on a new collective."""

import subprocess
import sys

from tests.helpers import ROOT, bench


def test_large_batch_study_prints_a_row_per_optimizer_and_batch():
    cmd = [sys.executable, "-m", "bench.perf.large_batch", "--batches", "16", "32", "--optimizers", "sgd", "lamb"]
    cmd += ["--epochs", "1", "--samples", "160", "--micro-batch", "8"]  # B = 32 on 2 ranks: 2 x 8 x 2 accumulated
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip().startswith(("sgd", "lamb"))]
    assert [(r[0], r[1]) for r in rows] == [("sgd", "16"), ("sgd", "32"), ("lamb", "16"), ("lamb", "32")]
    assert [" ".join(r[2:7]) for r in rows[:2]] == ["2 x 8 x 1", "2 x 8 x 2"]
    assert [int(r[8]) for r in rows] == [8, 4, 8, 4]  # equal epochs: 128 training samples / batch


def test_micro_sizes_with_units_range_factor_and_full_columns():
    proc = bench(3, "micro", "--op", "broadcast", "-m", "1K:64K", "-f", "8", "--full", "--iters", "3")
    assert proc.returncode == 0, proc.stderr
    header = next(line for line in proc.stdout.splitlines() if line.strip().startswith("bytes"))
    assert "iters" in header and "ours min" in header and "mpi max" in header and "busGB/s" in header
    assert "ours #wrong" in header and "# wrong elements: 0" in proc.stdout
    sizes = [int(line.split()[0]) for line in proc.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert sizes == [1020, 8184, 65532]  # 1K, 8K, 64K as whole buffers of 3 float32 blocks
    bad = bench(2, "micro", "--max", "1T")
    assert bad.returncode == 2 and bad.stderr.count("1024-based") == 1 and "Traceback" not in bad.stderr

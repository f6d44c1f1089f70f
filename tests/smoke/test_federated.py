"""Issue 17's algorithms as a user runs them: the FedLAMA benchmark script end to end at a tiny size (2 ranks: one
client host; FedLAMA on several is tests/mpi/test_fedlama.py) and its report (the FedLAMA table and the layers x
rounds figure). A robust run and a cohort too small for Krum: tests/mpi/test_train_command.py, test_bad_input.py."""

import subprocess
import sys

from tests.helpers import ROOT


def test_fedlama_benchmark_and_report(tmp_path):
    cmd = [sys.executable, "-m", "bench.perf.fedlama", "--clients", "8", "--alpha", "0.5", "--rounds", "4"]
    cmd += ["--ranks", "2"]
    cmd += ["--local-steps", "2", "--seeds", "1", "--eval-every", "2", "--keep", str(tmp_path / "runs")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| cnn |")]
    assert len(rows) == 3 and any("fedlama" in r for r in rows), proc.stdout
    report = subprocess.run(
        [sys.executable, "-m", "analysis", "report", str(tmp_path / "runs"), "-o", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Layer-wise aggregation (FedLAMA)" in text and "fedlama_pattern_fedlama_T2_phi2_s0.png" in text
    assert (tmp_path / "report" / "figures" / "fedlama_pattern_fedlama_T2_phi2_s0.png").stat().st_size > 0

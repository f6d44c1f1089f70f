"""Issue 17's algorithms as a user runs them: the FedLAMA benchmark script end to end at a tiny size, its report
(the FedLAMA table and the layers x rounds figure), a robust run with attackers recorded, and one clear message
for a cohort too small for Krum."""

import subprocess
import sys

import h5py

from tests.helpers import ROOT, bench


def test_fedlama_benchmark_and_report(tmp_path):
    cmd = [sys.executable, "-m", "bench.perf.fedlama", "--clients", "8", "--alpha", "0.5", "--rounds", "4"]
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


def test_robust_run_records_its_attackers_and_bad_cohort_is_one_message(tmp_path):
    out = tmp_path / "krum.h5"
    args = ["--strategy", "fedavg", "--clients", "12", "--fraction", "0.75", "--rounds", "3", "--quiet"]
    proc = bench(3, "train", *args, "--aggregator", "krum:2", "--byzantine", "0.2:sign-flip", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out) as f:
        assert f["fedavg/clients/byzantine"][()].sum() == 3 * 2  # round(0.2 x 9) per round
        assert f.attrs["status"] == "complete"
    proc = bench(3, "train", *args, "--aggregator", "krum:4", "--out", str(tmp_path / "x.h5"))
    assert proc.returncode == 2 and proc.stderr.count("needs at least 11 clients per round") == 1, proc.stderr
    assert "Traceback" not in proc.stderr

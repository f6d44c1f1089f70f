"""``python -m analysis report`` end to end on files from real short runs of every strategy, plus a microbenchmark
file for the cost model (subprocesses: the real commands, as a user runs them)."""

import subprocess
import sys

from tests.helpers import ROOT, bench

RUNS = {
    "ring": ["--strategy", "ring"],
    "localsgd": ["--strategy", "localsgd", "--local-steps", "2"],
    "ps": ["--strategy", "ps"],
    "ps-async": ["--strategy", "ps", "--ps-mode", "async"],
    "ssp": ["--strategy", "ssp", "--staleness", "1"],
}


def test_report_on_every_strategy(tmp_path):
    runs = tmp_path / "results"
    for name, args in RUNS.items():
        proc = bench(
            3,
            "train",
            *args,
            "--model",
            "mlp",
            "--steps",
            "12",
            "--quiet",
            "--trace",
            "--eval-every",
            "6",
            "--out",
            str(runs / f"{name}.h5"),
        )
        assert proc.returncode == 0, proc.stderr
    proc = bench(
        3,
        "train",
        "--strategy",
        "fedavg",
        "--clients",
        "6",
        "--rounds",
        "3",
        "--model",
        "mlp",
        "--quiet",
        "--out",
        str(runs / "fedavg.h5"),
    )
    assert proc.returncode == 0, proc.stderr
    proc = bench(3, "micro", "--impl", "ours,mpi", "--max", "65536", "--iters", "5", "--out", str(runs / "micro.h5"))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "analysis", "report", str(runs), "-o", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = (out / "report.md").read_text()
    for title in (
        "Speedup and efficiency",
        "Communication vs computation",
        "Strategy comparison",
        "FedAvg runs",
        "Cost model",
        "Runs behind this report",
    ):
        assert title in report
    for name in RUNS:
        assert f"{name}.h5" in report
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {"speedup.png", "speedup.pdf", "accuracy.png", "staleness.png", "timeline_ring.png"} <= figures
    proc = subprocess.run(
        [sys.executable, "-m", "analysis", "trace", str(runs / "ring.h5"), "-o", str(out / "t.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and (out / "t.json").stat().st_size > 1000, proc.stderr

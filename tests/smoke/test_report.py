"""``python -m analysis report`` end to end on files from real short runs of every strategy, plus a microbenchmark
file for the cost model (subprocesses: the real commands, as a user runs them; 2 ranks each, the fewest every
strategy runs on: a launch costs about 3 s of CPU per rank here, most of it importing torch)."""

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
            2,
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
        2,
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
    proc = bench(2, "micro", "--impl", "ours,mpi", "--max", "65536", "--iters", "5", "--out", str(runs / "micro.h5"))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "analysis", "report", str(runs), "-o", str(out), "--figures-for", "ring.h5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = (out / "report.md").read_text()
    for title in (
        "speedup and efficiency",
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
    assert {"accuracy.png", "staleness.png", "fedavg.png", "timeline_ring.png", "layers_ring.pdf"} <= figures
    assert len([f for f in figures if f.startswith("layers_")]) == 2 * 5  # 4 first by name + ring (png, pdf)
    proc = subprocess.run(
        [sys.executable, "-m", "analysis", "trace", str(runs / "ring.h5"), "-o", str(out / "t.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and (out / "t.json").stat().st_size > 1000, proc.stderr


def test_fedavg_throughput_is_the_clients_samples_over_round_time(tmp_path):
    """On a real file: samples/s must equal what the file's own per-client rows say was trained (E epochs of
    b floor(n_k / b) samples by each client that trained) over the aggregator's round times, after warm-up."""
    import numpy as np

    from analysis.data.load import load
    from analysis.stats.metrics import step_stats

    out = tmp_path / "f.h5"
    args = ["--clients", "12", "--fraction", "0.5", "--rounds", "4", "--local-epochs", "2", "--batch-size", "16"]
    proc = bench(
        3, "train", "--strategy", "fedavg", "--model", "mlp", *args, "--dropout", "0.3", "--quiet", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    run = load(out)
    d = run.data
    trained = np.isin(d["fedavg/clients/status"], (0, 2)) & (d["fedavg/clients/round"] >= 2)  # after round 1
    n = d["fedavg/clients/samples"][trained]
    b = np.minimum(16, n)
    samples = (2 * b * (n // b)).sum()
    seconds = d["timing/step"][0, 1:].sum()
    assert step_stats(run, warmup=1).samples_per_s == __import__("pytest").approx(samples / seconds)
    assert (d["fedavg/clients/status"] == 1).any()  # dropped clients were there to be left out


def test_one_rank_reports_no_communication(tmp_path):
    from analysis.data.load import load
    from analysis.stats.metrics import comm_split

    out = tmp_path / "one.h5"
    proc = bench(1, "train", "--strategy", "ring", "--model", "mlp", "--steps", "5", "--quiet", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    split = comm_split(load(out))
    assert split.comm_s == 0.0 and split.pack_s > 0  # copying to host buffers is packing, not communication

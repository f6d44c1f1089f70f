"""Reports and metrics on files from real launches (subprocesses: the real commands, as a user runs them). The
report on every strategy's runs is in tests/mpi/test_report_runs.py (its runs in the MPI job, the report a real
``analysis`` command)."""

from tests.helpers import bench


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

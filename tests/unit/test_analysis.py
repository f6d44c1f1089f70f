"""analysis/ on hand-made results files whose numbers are known: speedup, efficiency, communication ratio."""

import sys

import numpy as np
import pytest

from analysis import __main__ as cli
from analysis.load import load
from analysis.metrics import comm_split, speedups, step_stats
from bench import results


def fake_run(
    path, ranks, step_s, comm_s=0.0, fwd_s=0.0, bwd_s=0.0, steps=5, layers=2, batch=10, cfg=None, threads=1, cores=64
):
    """A ring-like run where every rank's step takes step_s and its per-layer phases split as given."""
    shape = (ranks, steps, layers)
    data = {
        "timing/step": (np.full((ranks, steps), step_s), "s"),
        "timing/wait": (np.zeros((ranks, steps)), "s"),
        "timing/optimizer": (np.zeros((ranks, steps)), "s"),
        "timing/forward": (np.full(shape, fwd_s / layers), "s"),
        "timing/backward": (np.full(shape, bwd_s / layers), "s"),
        "timing/comm": (np.full(shape, comm_s / layers), "s"),
        "timing/comm_bytes": (np.full(shape, 1000, dtype=np.int64), "bytes"),
        "layers/name": (np.array([f"l{i}" for i in range(layers)]), "1"),
    }
    data["timing/step"][0][:, 0] = 100.0  # a slow first step: must be left out as warm-up
    config = {"model": "mlp", "dataset": "digits", "scaling": "weak", "lr": 0.1, "out": str(path)} | (cfg or {})
    attrs = {
        "strategy": "ring",
        "config": config,
        "world_size": ranks,
        "roles": ["peer"] * ranks,
        "per_rank_batch": batch,
        "compute_ranks": ranks,
        "hosts": ["h"] * ranks,
        "cores_per_host": cores,
        "threads_per_rank": threads,
        "created_utc": "2026-11-21T00:00:00",
    }
    results.write(str(path), attrs, data)
    return load(path)


def test_step_stats_and_comm_split(tmp_path):
    run = fake_run(tmp_path / "a.h5", 2, step_s=0.5, comm_s=0.2, fwd_s=0.1, bwd_s=0.15)
    st = step_stats(run, warmup=1)
    assert st.median_s == pytest.approx(0.5) and st.steps == 4
    assert st.samples_per_s == pytest.approx(2 * 10 / 0.5)
    c = comm_split(run, warmup=1)
    assert c.overall_s == pytest.approx(4 * 0.5) and c.comm_s == pytest.approx(4 * 0.2)
    assert c.compute_s == pytest.approx(4 * 0.25) and c.ratio == pytest.approx(0.4)


def test_weak_scaling_speedup_and_efficiency(tmp_path):
    runs = [
        fake_run(tmp_path / "p1.h5", 1, step_s=0.2),
        fake_run(tmp_path / "p2.h5", 2, step_s=0.25),
        fake_run(tmp_path / "p4.h5", 4, step_s=0.4),
    ]
    rows = {r["ranks"]: r for r in speedups(runs)}
    assert rows[1]["speedup"] == pytest.approx(1.0)
    assert rows[2]["speedup"] == pytest.approx(2 * 0.2 / 0.25) and rows[2]["efficiency"] == pytest.approx(0.8)
    assert rows[4]["speedup"] == pytest.approx(4 * 0.2 / 0.4) and rows[4]["efficiency"] == pytest.approx(0.5)


def test_strong_scaling_and_grouping(tmp_path):
    strong = {"scaling": "strong", "global_batch_size": 40}
    runs = [
        fake_run(tmp_path / "s2.h5", 2, 0.4, batch=20, cfg=strong),
        fake_run(tmp_path / "s4.h5", 4, 0.25, batch=10, cfg=strong),
        fake_run(tmp_path / "other.h5", 4, 0.1, cfg={"lr": 0.5}),
    ]  # another config: its own group
    rows = {r["file"].split("/")[-1]: r for r in speedups(runs)}
    assert rows["s4.h5"]["speedup"] == pytest.approx(0.4 / 0.25)  # T(p0) / T(p)
    assert rows["s4.h5"]["efficiency"] == pytest.approx(0.4 / 0.25 / 2)
    assert rows["other.h5"]["speedup"] == pytest.approx(1.0) and rows["other.h5"]["baseline_ranks"] == 4


def test_cli_tables_skip_bad_files_and_flag_oversubscription(tmp_path, capsys):
    fake_run(tmp_path / "good.h5", 8, 0.3, comm_s=0.1, cores=2)
    (tmp_path / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    out = tmp_path / "report"
    assert cli.main(["tables", str(tmp_path), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "broken.h5" in captured.err and captured.err.count("skipped") == 1
    assert "33.3%" in captured.out and "oversubscribed" in captured.out
    assert {p.name for p in out.iterdir()} == {
        f"{n}.{e}" for n in ("speedup", "communication") for e in ("md", "csv", "tex")
    }
    assert cli.main(["tables", str(tmp_path / "report")]) == 1  # no results files there


def test_analysis_imports_neither_mpi_nor_torch():
    import subprocess

    code = "import sys, analysis.__main__; bad = {'mpi4py', 'torch'} & set(sys.modules); sys.exit(1 if bad else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0

"""What a reader gets: time-to-accuracy, tables that parse and print as numbers, figures that show their data,
the command line, the data frame, compare, and reading only what a table needs."""

import csv
import io
import math
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pytest

from analysis import __main__ as cli
from analysis.data.frame import to_dataframe
from analysis.data.load import load
from analysis.figures.run import timeline_plot
from analysis.report import ReportOptions, build_tables, figures
from analysis.stats.accuracy import time_to_accuracy
from analysis.stats.intervals import Estimate
from analysis.views.core import speedup_table
from analysis.views.tables import EST, INT, NUM, Column, Table
from bench.measure import results
from tests.analysis_fixtures import ps_run, ring_run, with_evals


def test_time_to_accuracy_at_the_first_crossing(tmp_path):
    run = ring_run(tmp_path / "a.h5", 2, 0.5, steps=10)  # step 0 is 100 s (warm-up: part of getting there)
    run = with_evals(tmp_path / "a.h5", [2, 5, 7, 9], [0.3, 0.62, 0.58, 0.7])
    tta = time_to_accuracy(run, 0.6)
    assert tta.reached and tta.rows == 6  # steps 0..5 (catches: the last crossing, or the index not the count)
    assert tta.seconds == pytest.approx(100 + 5 * 0.5)
    assert tta.bytes == pytest.approx(6 * 2 * 2 * 1000) and tta.samples == pytest.approx(6 * 2 * 10)
    missed = time_to_accuracy(run, 0.9)
    assert not missed.reached and np.isnan(missed.seconds)


def test_tables_print_fixed_decimals_and_csv_holds_numbers():
    cols = [Column("name"), Column("n", INT), Column("rate (samples/s)", EST, 0), Column("t (ms)", NUM, 2, 1e3)]
    rows = [["a", 3, Estimate(199400.0, 1234.5, 3), 0.00123], ["b", 1, Estimate(5.0, float("nan"), 1), float("nan")]]
    table = Table("t", "T", cols, rows)
    md = table.markdown()
    assert "e+" not in md and "e-" not in md and "199,400 ± 1,234" in md and "1.23" in md
    assert "|:---|---:|---:|---:|" in md  # numbers right-aligned
    parsed = list(csv.reader(io.StringIO(table.csv())))
    assert parsed[0] == ["name", "n", "rate (samples/s)", "rate (samples/s) ±95% CI", "t (ms)"]
    for row in parsed[1:]:
        for cell in row[1:]:
            assert cell == "" or float(cell) == float(cell)  # parses as a number (missing: empty)
    assert float(parsed[1][2]) == 199400.0 and float(parsed[1][4]) == pytest.approx(1.23)
    tex = table.latex()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"$\pm$" in tex


def test_empty_tables_are_left_out(tmp_path):
    tables = build_tables([ring_run(tmp_path / "a.h5", 2, 0.5)], ReportOptions())
    assert {t.name for t in tables} == {"speedup", "communication", "strategies"}  # no fedavg, no pivot


def test_speedup_table_reads_no_per_layer_array(tmp_path):
    ring_run(tmp_path / "a.h5", 2, 0.5)
    run = load(tmp_path / "a.h5")
    speedup_table([run], 1)
    assert not [name for name in run.data.loaded() if run.data[name].ndim == 3]


def test_every_table_reduces_per_layer_series_block_by_block(tmp_path, monkeypatch):
    """The whole report's tables read no per-layer array whole (a 256 x 10,000 x 60 series would be 1.2 GB as
    float64): they take blockwise sums, and those equal the eager ones (blocks of 3 rows over 8 steps)."""
    import analysis.data.load

    monkeypatch.setattr(analysis.data.load, "BLOCK_ROWS", 3)
    ring_run(tmp_path / "a.h5", 2, 0.5, steps=8)
    lazy = load(tmp_path / "a.h5")
    tables = build_tables([lazy], ReportOptions())
    assert not [name for name in lazy.data.loaded() if lazy.data[name].ndim == 3]
    eager = load(tmp_path / "a.h5")
    for name in list(eager.data):
        eager.data[name] = eager.data[name]  # read every dataset whole: the reductions take the eager path
    assert [t.markdown() for t in build_tables([eager], ReportOptions())] == [t.markdown() for t in tables]


def test_figures_are_written_and_the_timeline_spans_its_steps(tmp_path, monkeypatch):
    ranks, steps, layers = 2, 6, 2
    starts = np.cumsum(np.full((ranks, steps), 0.01), axis=1) + 5.0  # starts at 5 s: not near 0
    timeline = {
        "timeline/step_start": (starts, "s"),
        **{f"timeline/{p}_start": (np.repeat(starts[..., None], layers, axis=2), "s") for p in ("forward", "backward")},
        "timeline/comm_start": (np.repeat(starts[..., None], layers, axis=2) + 0.005, "s"),
    }
    run = ring_run(tmp_path / "a.h5", ranks, 0.01, steps=steps, fwd_s=0.002, comm_s=0.002, extra=timeline)
    with_evals(tmp_path / "a.h5", [2, 5], [0.5, 0.8])
    run = load(tmp_path / "a.h5")
    seen = {}
    real_save = timeline_plot.__globals__["save"]

    def keep_axes(fig, out, stem):
        seen[stem] = fig.axes[0].get_xlim()
        return real_save(fig, out, stem)

    monkeypatch.setitem(timeline_plot.__globals__, "save", keep_axes)
    files = figures([run], tmp_path / "fig", ReportOptions(target=0.7))
    assert all(p.exists() and p.stat().st_size > 0 for p in files)
    assert {p.stem for p in files} >= {"accuracy", "layers_a", "timeline_a"}
    lo, hi = seen["timeline_a"]
    assert 5.0 < lo and hi < 5.0 + 0.01 * steps + 0.02  # steps 1..3 only, not from 0
    plt.close("all")


def test_cli_skips_bad_files_flags_oversubscription_and_checks_the_target(tmp_path, capsys):
    ring_run(tmp_path / "good.h5", 8, 0.3, comm_s=0.1, cores=2)
    (tmp_path / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    out = tmp_path / "tables"
    assert cli.main(["tables", str(tmp_path), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "broken.h5" in captured.err and captured.err.count("skipped") == 1
    assert "33.3" in captured.out and "| yes |" in captured.out
    assert {p.suffix for p in out.iterdir()} == {".md", ".csv", ".tex"}
    assert cli.main(["tables", str(out)]) == 1  # no results files there
    with pytest.raises(SystemExit) as exc:
        cli.main(["tables", str(tmp_path), "--target-accuracy", "90"])
    assert exc.value.code == 2


def test_to_dataframe_is_long_form(tmp_path):
    ring_run(tmp_path / "a.h5", 2, 0.5, steps=3)
    ring_run(tmp_path / "b.h5", 3, 0.5, steps=3)
    frame = to_dataframe([tmp_path / "a.h5", tmp_path / "b.h5"])
    assert len(frame) == 2 * 3 + 3 * 3 and {"run", "rank", "step", "timing/step [s]"} <= set(frame.columns)
    layers = to_dataframe([tmp_path / "a.h5"], layers=True)
    assert len(layers) == 2 * 3 * 2 and set(layers["layer"]) == {"l0", "l1"}
    assert set(frame["role"]) == {"peer"} and set(frame["config/lr"]) == {0.1} and "config/model" in frame.columns
    assert sorted(set(frame["step"])) == [1, 2, 3]  # numbered from 1, as printed and in the file


def test_to_dataframe_leaves_aggregator_series_empty_elsewhere_and_keeps_compression(tmp_path):
    """An aggregator-only series is NaN on the client hosts (a mean over ranks was a third of rank 0's with 0s);
    compress/* series are columns like the others."""
    import h5py

    from tests.analysis_fixtures import fedavg_run

    fedavg_run(tmp_path / "f.h5", 2, 3, [(0, 0, 10, 0)], [0.1, 0.1, 0.1], {"clients": 2})
    with h5py.File(tmp_path / "f.h5", "a") as f:
        f["fedavg/aggregator_receive"][0, :] = 0.03
        f.create_dataset("compress/sent_bytes", data=np.full((3, 3, 2), 500, np.int64)).attrs["units"] = "bytes"
    frame = to_dataframe([tmp_path / "f.h5"])
    receive = frame.groupby("role")["fedavg/aggregator_receive [s]"].mean()
    assert receive["aggregator"] == pytest.approx(0.03) and np.isnan(receive["client_host"])
    assert frame["fedavg/aggregator_receive [s]"].mean() == pytest.approx(0.03)
    layered = to_dataframe([tmp_path / "f.h5"], layers=True)
    assert set(layered["compress/sent_bytes [bytes]"]) == {500.0}


def test_compare_prints_config_and_metric_differences(tmp_path, capsys):
    ring_run(tmp_path / "a.h5", 2, 0.5)
    ring_run(tmp_path / "b.h5", 2, 0.25, cfg={"lr": 0.2})
    assert cli.main(["compare", str(tmp_path / "a.h5"), str(tmp_path / "b.h5")]) == 0
    out = capsys.readouterr().out
    moved = next(line for line in out.splitlines() if line.startswith("MiB moved"))
    # 2 ranks x 2 layers x 1000 B per step, in both runs: 0.004 MiB, ratio 1
    assert moved.split()[-3:] == ["0.004", "0.004", "1.000"]
    assert "lr" in out and "0.1" in out and "0.2" in out
    line = next(row for row in out.splitlines() if row.startswith("samples/s"))
    assert line.split()[-1] == "2.000"


def test_to_dataframe_has_no_values_past_the_steps_a_rank_took(tmp_path):
    """A decoupled run whose worker 2 took 3 of the 5 rows: its rows 4 and 5 are NaN (the file's zeros made a
    per-rank mean 3/5 of the truth), the others keep their values. Catches: the mask not applied, or off by one."""
    import h5py

    ps_run(tmp_path / "p.h5", 1, 2, 0.5, cfg={"ps_mode": "async"})
    with h5py.File(tmp_path / "p.h5", "a") as f:
        f["timing/steps_done"][...] = [5, 5, 3]
    frame = to_dataframe([tmp_path / "p.h5"])
    worker = frame[frame["rank"] == 2].set_index("step")["timing/step [s]"]
    assert worker[[1, 2, 3]].notna().all() and worker[[4, 5]].isna().all()
    assert frame[frame["rank"] == 1]["timing/step [s]"].notna().all()


def test_compare_names_the_strategy_once_and_refuses_a_micro_file(tmp_path, capsys):
    """A ring and a ps run whose configs both hold the strategy: one 'strategy' line (it printed two); a micro
    file is refused with exit 2 and one line (it ended in a KeyError traceback)."""
    ring_run(tmp_path / "a.h5", 2, 0.5, cfg={"strategy": "ring"})
    ps_run(tmp_path / "b.h5", 1, 2, 0.5, cfg={"strategy": "ps"})
    assert cli.main(["compare", str(tmp_path / "a.h5"), str(tmp_path / "b.h5")]) == 0
    out = capsys.readouterr().out
    assert [line.split()[:3] for line in out.splitlines() if line.strip().startswith("strategy")] == [
        ["strategy", "ring", "->"]
    ]
    sizes = np.array([8, 64], dtype=np.int64)
    micro = {"micro/allreduce/ours/size_bytes": (sizes, "bytes"), "micro/allreduce/ours/time_s": (np.ones((2, 1)), "s")}
    results.write(str(tmp_path / "m.h5"), {"kind": "micro", "op": "allreduce", "world_size": 2}, micro)
    assert cli.main(["compare", str(tmp_path / "a.h5"), str(tmp_path / "m.h5")]) == 2
    assert "microbenchmark file" in capsys.readouterr().err


def test_analysis_imports_neither_mpi_nor_torch():
    code = "import sys, analysis.__main__, analysis.report; sys.exit(bool({'mpi4py', 'torch'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_report_names_runs_that_did_not_complete(tmp_path):
    """A diverged run's numbers sit in the tables beside the others': the report says which runs they are."""
    from analysis.report import unfinished_notes

    ring_run(tmp_path / "ok.h5", 2, 0.5)
    why = "non-finite values at step 2 on rank 0: loss = nan"
    ring_run(tmp_path / "div.h5", 2, 0.5, attrs={"status": "diverged", "stopped_by": why})
    notes = unfinished_notes([load(tmp_path / "ok.h5"), load(tmp_path / "div.h5")])
    assert notes[1:] == [f"- **div.h5: diverged** ({why})", ""]
    assert unfinished_notes([load(tmp_path / "ok.h5")]) == []


def test_compression_table_sets_methods_against_the_dense_ring(tmp_path):
    """Rows for the compressed runs and their dense baseline (same model and ranks), the share of dense bytes
    from compress/dense_bytes; nothing when no run compressed."""
    from analysis.views.compress import compression_table
    from tests.analysis_fixtures import compressed_pair

    dense, topk = compressed_pair(tmp_path)
    assert compression_table([dense], 1).empty
    table = compression_table([dense, topk], 1)
    rows = {row[3]: row for row in table.rows}
    assert set(rows) == {"none", "topk:0.01"} and rows["topk:0.01"][4] == "on"
    assert math.isclose(rows["topk:0.01"][7].mean, 1000 / 4000) and math.isclose(rows["none"][7].mean, 1.0)
    assert math.isclose(rows["topk:0.01"][9].mean, 0.02 / 0.1)  # 2 layers x 0.01 s of a 0.1 s step


def test_compression_figure_per_block_with_compressed_runs(tmp_path):
    """One figure (PNG and PDF) for the strategy/model/ranks block holding a compressed run, none for a block
    without one; its right panel is on a log scale of MiB moved."""
    from analysis.figures.compress import compression_plots

    ring_run(tmp_path / "d.h5", 2, 0.1)
    ring_run(tmp_path / "t.h5", 2, 0.1, cfg={"compress": "topk:0.01"})
    ring_run(tmp_path / "o.h5", 3, 0.1)
    dense, topk, other = (with_evals(tmp_path / f"{n}.h5", [1, 4], [0.5, 0.8]) for n in "dto")
    assert compression_plots([dense, other], tmp_path / "none") == []
    paths = compression_plots([dense, topk, other], tmp_path / "figs")
    assert [p.name for p in paths] == ["compression_ring_mlp_n2.png", "compression_ring_mlp_n2.pdf"]
    assert paths[0].stat().st_size > 10_000


def test_pivot_shows_an_empty_option_as_none():
    from analysis.views.pivot import _shown

    assert _shown('""') == "none" and _shown("null") == "none"
    assert _shown('"0.1:sign-flip"') == "0.1:sign-flip" and _shown("0") == 0


def test_pivot_pools_repeats_into_cells(tmp_path):
    """A 2 x 2 grid (lr x batch_size) with 2 seeds each: two rows of two cells, each the mean of its 2 seeds'
    final accuracies (hand-set here), n = 2; the swept options in config order. (The sweep's smoke test launches
    one seed per cell.) Mutations caught: seeds counted as a swept option, cells not pooled."""
    from analysis.views.pivot import pivot_tables, swept_options
    from tests.analysis_fixtures import ring_run, with_evals

    runs = []
    for lr in (0.05, 0.2):
        for batch in (8, 16):
            for seed in (0, 1):
                cfg = {"lr": lr, "batch_size": batch, "seed": seed, "sweep": "tiny"}
                path = tmp_path / f"r_{lr}_{batch}_{seed}.h5"
                ring_run(path, 1, 1.0, cfg=cfg)
                runs.append(with_evals(path, [4], [lr + batch / 100 + seed / 10]))
    assert swept_options(runs) == ["batch_size", "lr"]
    table = pivot_tables(runs)[0]
    cells = [c for row in table.rows for c in row[1:]]
    assert len(table.rows) == 2 and len(cells) == 4 and all(c.n == 2 for c in cells)
    means = sorted(round(c.mean, 6) for c in cells if hasattr(c, "mean"))
    assert means == sorted(round(lr + b / 100 + 0.05, 6) for lr in (0.05, 0.2) for b in (8, 16))

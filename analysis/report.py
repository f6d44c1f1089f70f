"""``python -m analysis report RESULTS... -o report/``: every table, the figures and the cost model in one
``report.md``, with the provenance of the runs behind it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis import costmodel, plots
from analysis.compare import fedavg_table, model_table, strategy_comparison, top_layers
from analysis.metrics import speedups
from analysis.tables import Table

SCALE = [16, 64, 256, 1024, 4096]


def fit_from_micro(micro_runs) -> costmodel.Fit | None:
    """alpha-beta from the first micro file with our all-reduce (else a ping-pong) over several sizes."""
    for run in micro_runs:
        p = int(run.attrs.get("world_size", 0))
        for op, impl in (("allreduce", "ours"), ("allreduce", "mpi"), ("latency", "ours")):
            key = f"micro/{op}/{impl}/time_s"
            if key in run.data and run.data[key].shape[0] >= 2:
                sizes = run.data[f"micro/{op}/{impl}/size_bytes"]
                times = np.nanmedian(run.data[key], axis=1)
                if op == "allreduce" and p >= 2:
                    return costmodel.fit_ring_allreduce(sizes, times, p)
                if op == "latency":
                    return costmodel.fit_p2p(sizes, times)
    return None


def provenance_table(runs) -> Table:
    rows = [
        [
            Path(r.path).name,
            r.strategy,
            r.world_size,
            r.attrs.get("status"),
            r.attrs.get("completed_steps"),
            r.attrs.get("created_utc", ""),
            str(r.attrs.get("git_commit", ""))[:10],
            r.attrs.get("mpi_library", "")[:30],
            r.attrs.get("slurm_job_id", ""),
        ]
        for r in runs
    ]
    return Table(
        "provenance",
        "Runs behind this report",
        ["file", "strategy", "ranks", "status", "steps", "created (UTC)", "commit", "MPI", "Slurm job"],
        rows,
    )


def write_report(runs, micro_runs, out: Path, warmup: int, fit: costmodel.Fit | None, tables: list[Table]) -> Path:
    """Write report.md, every table (.md/.csv/.tex) and the figures; ``tables`` is extended in place with the
    report's own tables, so the caller can print all of them."""
    out.mkdir(parents=True, exist_ok=True)
    figures = out / "figures"
    tables += [top_layers(runs, warmup), strategy_comparison(runs, warmup), fedavg_table(runs)]
    if fit is None:
        fit = fit_from_micro(micro_runs)
    model_note = ""
    if fit is not None:
        tables.append(model_table(runs, fit, SCALE, warmup))
    else:
        model_note = "No cost model: give a microbenchmark file (`bench micro --out`) or --alpha and --beta.\n"
    tables.append(provenance_table(runs))
    figs = plots.speedup_plot(speedups([r for r in runs if r.strategy != "fedavg"], warmup), figures)
    figs += plots.accuracy_plot(runs, figures)
    figs += plots.staleness_plot(runs, figures)
    for run in runs:
        if run.strategy != "fedavg":
            figs += plots.layer_bars(run, figures, warmup)
            figs += plots.timeline_plot(run, figures)
    lines = ["# syncbench report", "", f"{len(runs)} training run(s), {len(micro_runs)} microbenchmark file(s).", ""]
    lines += [model_note] if model_note else []
    for table in tables:
        table.save(out)
        lines.append(table.markdown())
    lines.append("## Figures\n")
    lines += [f"![{p.stem}](figures/{p.name})\n" for p in figs if p.suffix == ".png"]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path

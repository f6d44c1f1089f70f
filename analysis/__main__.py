"""``python -m analysis report|tables|plots|trace|model``: tables, figures, traces and the cost model from results
files (files or folders of ``*.h5``). Needs numpy, h5py and matplotlib only: no MPI, no torch.

    python -m analysis report results/ -o report/       # report.md: every table, figures, cost model, provenance
    python -m analysis tables results/ -o report/       # tables only (Markdown, CSV, LaTeX)
    python -m analysis plots results/ -o report/figures
    python -m analysis trace run.h5 -o run.json         # Chrome trace events (needs bench train --trace)
    python -m analysis model results/ micro.h5          # cost model: fit, validation, predictions at scale

A file that cannot be read (killed mid-write, another schema, not HDF5) gets one line naming it, and the
tables go on with the files that are good.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.load import ResultsError, load
from analysis.metrics import comm_split, oversubscribed, speedups
from analysis.tables import Table


def find_files(paths: list[str]) -> list[Path]:
    files = []
    for p in map(Path, paths):
        files += sorted(p.glob("*.h5")) if p.is_dir() else [p]
    return files


def load_all(paths: list[str], micro: list | None = None) -> list:
    """Training runs from ``paths``; microbenchmark files go to ``micro`` when a list is given."""
    runs = []
    for path in find_files(paths):
        try:
            run = load(path)
            if run.attrs.get("kind") == "micro":
                if micro is not None:
                    micro.append(run)
                continue
            if "timing/step" not in run.data or run.data["timing/step"].shape[1] == 0:
                raise ResultsError(f"{path}: no training steps in the file")
            runs.append(run)
        except ResultsError as exc:
            print(f"analysis: skipped {exc}", file=sys.stderr)
    return runs


def build_tables(runs, warmup: int) -> list[Table]:
    note = f"statistics leave out the first {warmup} step(s) of each run as warm-up"
    over = [r.path for r in runs if oversubscribed(r)]
    flag = [f"oversubscribed (more busy threads than cores on a host; speedup bounded by cores): {len(over)} run(s)"]
    rows = speedups(runs, warmup)
    speed = Table(
        "speedup",
        "Speedup and efficiency (against the fewest ranks in each group)",
        [
            "strategy",
            "model",
            "dataset",
            "scaling",
            "ranks",
            "step median (s)",
            "step p25-p75 (s)",
            "samples/s",
            "speedup",
            "efficiency",
            "oversubscribed",
        ],
        [
            [
                r["strategy"],
                r["model"],
                r["dataset"],
                r["scaling"],
                r["ranks"],
                r["step_median_s"],
                f"{r['step_p25_s']:.4g}-{r['step_p75_s']:.4g}",
                r["samples_per_s"],
                r["speedup"],
                r["efficiency"],
                r["oversubscribed"],
            ]
            for r in rows
        ],
        [note, "step time = slowest computing rank's step; speedup = samples/s ratio (ideal = ranks ratio)"]
        + (flag if over else []),
    )
    comm_rows = []
    for run in sorted(runs, key=lambda r: (r.strategy, r.world_size, r.path)):
        c = comm_split(run, warmup)
        comm_rows.append(
            [
                run.strategy,
                run.config.get("model"),
                run.world_size,
                c.overall_s,
                c.comm_s,
                c.compute_s,
                c.wait_s,
                f"{100 * c.ratio:.1f}%",
                Path(run.path).name,
            ]
        )
    comm = Table(
        "communication",
        "Communication vs computation (PipeTransformer Table 2 form)",
        [
            "strategy",
            "model",
            "ranks",
            "overall cost (s)",
            "communication cost (s)",
            "computation cost (s)",
            "wait (s)",
            "communication cost ratio",
            "file",
        ],
        comm_rows,
        [
            note,
            "costs: mean over computing ranks of the sum over measured steps; computation = forward + backward + "
            "optimizer; ratio = communication / overall",
        ],
    )
    return [speed, comm]


def _common(p, out_help: str) -> None:
    p.add_argument("paths", nargs="+", help="results files or folders of *.h5 (microbenchmark files too)")
    p.add_argument("-o", "--out", default="", help=out_help)
    p.add_argument("--warmup", type=int, default=1, help="steps left out at the start of each run (default: 1)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _common(sub.add_parser("report", help="report.md with every table, the figures and the cost model"), "folder")
    _common(sub.add_parser("tables", help="speedup and communication tables"), "folder for .md/.csv/.tex copies")
    _common(sub.add_parser("plots", help="figures as PNG and PDF"), "folder (default: figures)")
    model = sub.add_parser("model", help="alpha-beta cost model: fit, validation, predictions at scale")
    _common(model, "folder for the table")
    for p in (sub.choices["report"], model):
        p.add_argument("--alpha", type=float, default=0.0, help="latency in seconds (instead of fitting it)")
        p.add_argument("--beta", type=float, default=0.0, help="seconds per byte (instead of fitting it)")
    trace = sub.add_parser("trace", help="Chrome trace-event JSON of one run (needs bench train --trace)")
    trace.add_argument("path", help="results file")
    trace.add_argument("-o", "--out", required=True, help="JSON file to write")
    trace.add_argument("--first", type=int, default=0, help="first step (default: 0)")
    trace.add_argument("--steps", type=int, default=0, help="steps to export (default: all)")
    args = parser.parse_args(argv)
    if args.command == "trace":
        return _trace(args)
    micro: list = []
    runs = load_all(args.paths, micro)
    if not runs:
        print(f"analysis: no readable results files in {' '.join(args.paths)}", file=sys.stderr)
        return 1
    if args.command == "plots":
        return _plots(runs, Path(args.out or "figures"), args.warmup)
    fit = None
    if getattr(args, "alpha", 0) > 0 and getattr(args, "beta", 0) > 0:
        from analysis.costmodel import Fit

        fit = Fit(args.alpha, args.beta, 0.0)
    if args.command == "model":
        return _model(runs, micro, fit, args)
    tables = build_tables(runs, args.warmup)
    if args.command == "report":
        from analysis.report import write_report

        path = write_report(runs, micro, Path(args.out or "report"), args.warmup, fit, tables)
        for table in tables:  # the report's tables also go to the terminal, as `tables` prints them
            print(table.markdown())
        print(f"analysis: wrote {path}")
        return 0
    for table in tables:
        print(table.markdown())
        if args.out:
            table.save(Path(args.out))
    return 0


def _trace(args) -> int:
    from analysis.trace import write_trace

    try:
        n = write_trace(load(args.path), args.out, args.first, args.steps or None)
    except ResultsError as exc:
        print(f"analysis: {exc}", file=sys.stderr)
        return 1
    print(f"analysis: wrote {n} trace events to {args.out} (open in https://ui.perfetto.dev or chrome://tracing)")
    return 0


def _plots(runs, out: Path, warmup: int) -> int:
    from analysis import plots

    figs = plots.speedup_plot(speedups([r for r in runs if r.strategy != "fedavg"], warmup), out)
    figs += plots.accuracy_plot(runs, out) + plots.staleness_plot(runs, out)
    for run in runs:
        if run.strategy != "fedavg":
            figs += plots.layer_bars(run, out, warmup) + plots.timeline_plot(run, out)
    print("\n".join(f"analysis: wrote {p}" for p in figs))
    return 0


def _model(runs, micro, fit, args) -> int:
    from analysis.compare import model_table
    from analysis.report import SCALE, fit_from_micro

    fit = fit or fit_from_micro(micro)
    if fit is None:
        print(
            "analysis: the cost model needs a microbenchmark file (bench micro --out) or --alpha/--beta",
            file=sys.stderr,
        )
        return 2
    table = model_table(runs, fit, SCALE, args.warmup)
    print(table.markdown())
    if args.out:
        table.save(Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

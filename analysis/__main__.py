"""``python -m analysis report|tables|plots|trace|model|compare``: tables, figures, traces and the cost model from
results files (files or folders of ``*.h5``). Needs numpy, scipy, h5py and matplotlib only: no MPI, no torch.

    python -m analysis report results/ -o report/ --target-accuracy 0.9   # report.md: tables, figures, model
    python -m analysis tables results/ -o report/       # tables only (Markdown, CSV, LaTeX)
    python -m analysis plots results/ -o report/figures
    python -m analysis trace run.h5 -o run.json         # Chrome trace events (needs bench train --trace)
    python -m analysis model results/ micro.h5          # cost model: fit, validation, predictions at scale
    python -m analysis compare a.h5 b.h5                # what differs between two runs: config and metrics

A file that cannot be read (killed mid-write, another schema, not HDF5) gets one line naming it, and the
tables go on with the files that are good.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from analysis.data.load import ResultsError, load
from analysis.report import ReportOptions, build_tables


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


def fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"a fraction in (0, 1] (0.9 for 90 %), got {text}")
    return value


def _common(p, out_help: str) -> None:
    p.add_argument("paths", nargs="+", help="results files or folders of *.h5 (microbenchmark files too)")
    p.add_argument("-o", "--out", default="", help=out_help)
    p.add_argument("--warmup", type=int, default=1, help="steps (rounds) left out at the start of each run (default 1)")
    p.add_argument("--target-accuracy", type=fraction, default=None, help="time-to-accuracy target, e.g. 0.9")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.split("\n\n")[0].replace("\n", " "))
    sub = top.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="report.md with every table, the figures and the cost model")
    _common(report, "folder (default: report)")
    report.add_argument("--per-run", type=int, default=4, help="per-run figures for the first N runs (default 4)")
    report.add_argument("--figures-for", nargs="*", default=[], help="also per-run figures for these file names")
    _common(sub.add_parser("tables", help="speedup, communication, strategy, FedAvg and sweep tables"), "folder")
    plots = sub.add_parser("plots", help="figures as PNG and PDF")
    _common(plots, "folder (default: figures)")
    plots.add_argument("--per-run", type=int, default=4, help="per-run figures for the first N runs (default 4)")
    plots.add_argument("--figures-for", nargs="*", default=[], help="also per-run figures for these file names")
    model = sub.add_parser("model", help="alpha-beta cost model: fit, validation, predictions at scale")
    _common(model, "folder for the table")
    for p in (report, model):
        p.add_argument("--alpha", type=float, default=0.0, help="latency in seconds (instead of fitting it)")
        p.add_argument("--beta", type=float, default=0.0, help="seconds per byte (instead of fitting it)")
    trace = sub.add_parser("trace", help="Chrome trace-event JSON of one run (needs bench train --trace)")
    trace.add_argument("path", help="results file")
    trace.add_argument("-o", "--out", required=True, help="JSON file to write")
    trace.add_argument("--first", type=int, default=1, help="first step, numbered from 1 as printed (default: 1)")
    trace.add_argument("--steps", type=int, default=0, help="steps to export (default: all)")
    compare = sub.add_parser("compare", help="config and metric differences between two runs")
    compare.add_argument("a", help="results file")
    compare.add_argument("b", help="results file")
    compare.add_argument("--warmup", type=int, default=1, help="steps left out at the start (default 1)")
    return top


def options(args) -> ReportOptions:
    from analysis.models.costmodel import Fit

    alpha, beta = getattr(args, "alpha", 0), getattr(args, "beta", 0)
    if (alpha > 0) != (beta > 0):
        print("analysis: give both --alpha and --beta (a latency and a per-byte time), or neither", file=sys.stderr)
        raise SystemExit(2)
    fit = Fit.given(alpha, beta) if alpha > 0 else None
    figures_for = getattr(args, "figures_for", [])
    return ReportOptions(args.warmup, args.target_accuracy, fit, getattr(args, "per_run", 4), figures_for)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "trace":
        return _trace(args)
    if args.command == "compare":
        from analysis.views.diff import compare

        return compare(args.a, args.b, args.warmup)
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:  # bad input: one message, exit 2 (a typo must not read as "no readable results")
        print(f"analysis: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    micro: list = []
    runs = load_all(args.paths, micro)
    if not runs and not (micro and args.command in ("model", "report")):  # microbenchmarks alone: their models
        print(f"analysis: no readable results files in {' '.join(args.paths)}", file=sys.stderr)
        return 1
    opts = options(args)
    if args.command == "plots":
        from analysis.report import figures

        print("\n".join(f"analysis: wrote {p}" for p in figures(runs, Path(args.out or "figures"), opts)))
        return 0
    if args.command == "model":
        return _model(runs, micro, opts, args.out)
    if args.command == "report":
        from analysis.report import write_report

        path, tables = write_report(runs, micro, Path(args.out or "report"), opts)
        for table in tables:  # the report's tables also go to the terminal, as `tables` prints them
            print(table.markdown())
        print(f"analysis: wrote {path}")
        return 0
    for table in build_tables(runs, opts):
        print(table.markdown())
        if args.out:
            table.save(Path(args.out))
    return 0


def _trace(args) -> int:
    from analysis.views.trace import write_trace

    if args.first < 1:
        print(f"analysis: --first {args.first}: steps are numbered from 1", file=sys.stderr)
        return 2
    try:
        run = load(args.path)
        rows = run.data["timing/step"].shape[1] if "timing/step" in run.data else 0
        if args.first > rows:
            print(f"analysis: --first {args.first}: {args.path} has steps 1..{rows}", file=sys.stderr)
            return 2
        n = write_trace(run, args.out, args.first - 1, args.steps or None)
    except ResultsError as exc:
        print(f"analysis: {exc}", file=sys.stderr)
        return 1
    print(f"analysis: wrote {n} trace events to {args.out} (open in https://ui.perfetto.dev or chrome://tracing)")
    return 0


def _model(runs, micro, opts: ReportOptions, out: str) -> int:
    from analysis.views.model import SCALE, fit_from_micro, model_table
    from analysis.views.nodes import two_level_steps_table, two_level_table

    two_level = two_level_table(micro)  # from a ``micro --op links`` file, if one was given
    if not two_level.empty:
        for table in (two_level, two_level_steps_table(runs, micro, opts.warmup)):
            if not table.empty:
                print(table.markdown())
                if out:
                    table.save(Path(out))
        if not runs:
            return 0
    fit = opts.fit or fit_from_micro(micro)
    if fit is None:
        print(
            "analysis: the cost model needs a microbenchmark file (bench micro --out) or --alpha/--beta",
            file=sys.stderr,
        )
        return 2
    table = model_table(runs, fit, SCALE, opts.warmup)
    print(table.markdown())
    if out:
        table.save(Path(out))
    return 0


if __name__ == "__main__":
    if hasattr(signal, "SIGPIPE"):  # `... | head` closes the pipe: end quietly, as other command-line tools do
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())

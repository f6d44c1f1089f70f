"""``python -m analysis report RESULTS... -o report/``: every table, the figures and the cost model in one
``report.md``, with the provenance of the runs behind it. Tables with no rows are left out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from analysis.figures import groups as plots
from analysis.figures import run as plots_run
from analysis.figures.compress import compression_plots
from analysis.figures.fedlama import fedlama_plots
from analysis.figures.freezing import freezing_plots
from analysis.figures.nodes import links_plot
from analysis.figures.tiers import tiers_plots
from analysis.models.costmodel import Fit
from analysis.stats.groups import speedups
from analysis.views.compress import compression_table
from analysis.views.core import communication_table, layers_table, speedup_table, strategy_table
from analysis.views.fedlama import fedlama_table
from analysis.views.fl import fedavg_table
from analysis.views.freezing import freezing_table
from analysis.views.model import SCALE, fit_from_micro, model_table, provenance_table
from analysis.views.nodes import links_table, two_level_steps_table, two_level_table
from analysis.views.overlap import overlap_table
from analysis.views.pivot import pivot_tables
from analysis.views.tables import Table
from analysis.views.tiers import tier_costs_table, tiers_table


@dataclass
class ReportOptions:
    warmup: int = 1
    target: float | None = None  # accuracy for time-to-accuracy columns and target lines
    fit: Fit | None = None  # given alpha/beta; else fitted from a micro file
    per_run: int = 4  # per-run figures for the first N runs (by file name) ...
    figures_for: list[str] = field(default_factory=list)  # ... and for these file names


def build_tables(runs, opts: ReportOptions) -> list[Table]:
    """The tables ``python -m analysis tables`` prints (no cost model, no provenance)."""
    tables = [
        speedup_table(runs, opts.warmup),
        communication_table(runs, opts.warmup),
        overlap_table(runs, opts.warmup),
        links_table(runs, opts.warmup),
        compression_table(runs, opts.warmup, opts.target),
        strategy_table(runs, opts.warmup, opts.target),
        fedavg_table(runs, opts.warmup, opts.target),
        fedlama_table(runs, opts.target),
        tiers_table(runs),
        freezing_table(runs, opts.warmup, opts.target),
        tier_costs_table(runs),
        *pivot_tables(runs, opts.target),
    ]
    return [t for t in tables if not t.empty]


def per_run_selection(runs, opts: ReportOptions) -> list:
    named = set(opts.figures_for)
    ordered = sorted(runs, key=lambda r: r.name)
    return [r for i, r in enumerate(ordered) if i < opts.per_run or r.name in named or Path(r.path).stem in named]


def figures(runs, out: Path, opts: ReportOptions) -> list[Path]:
    figs = plots.speedup_plot(speedups(runs, opts.warmup), out)
    figs += plots.accuracy_plot(runs, out, opts.target)
    figs += plots.fedavg_plot(runs, out, opts.target)
    figs += plots.staleness_plot(runs, out)
    figs += compression_plots(runs, out, opts.target)
    figs += fedlama_plots(runs, out)
    figs += tiers_plots(runs, out)
    figs += freezing_plots(runs, out)
    figs += links_plot(runs, out, opts.warmup)
    chosen = per_run_selection(runs, opts)
    figs += plots_run.layer_bars(chosen, out, opts.warmup)  # one y scale per model across the chosen runs
    for run in chosen:
        figs += plots_run.timeline_plot(run, out)
    return figs


def unfinished_notes(runs) -> list[str]:
    """A line for every run that did not complete (diverged, stopped, failed, still running or killed): its numbers
    are in the tables like the others', and a reader must know which runs they come from."""
    notes = []
    for r in (r for r in runs if r.attrs.get("status", "complete") != "complete"):
        why = r.attrs.get("stopped_by")
        notes.append(f"- **{r.name}: {r.attrs.get('status')}**" + (f" ({why})" if why else ""))
    return ["Runs that did not complete (their rows are in the tables below):", *notes, ""] if notes else []


def write_report(runs, micro_runs, out: Path, opts: ReportOptions) -> tuple[Path, list[Table]]:
    """Write report.md, every table (.md/.csv/.tex) and the figures; returns the report's path and tables."""
    out.mkdir(parents=True, exist_ok=True)
    tables = build_tables(runs, opts)
    tables.insert(2, layers_table(runs, opts.warmup))
    fit = opts.fit or fit_from_micro(micro_runs)
    model_note = ""
    if fit is not None:
        tables.append(model_table(runs, fit, SCALE, opts.warmup))
    else:
        model_note = "No cost model: give a microbenchmark file (`bench micro --out`) or --alpha and --beta.\n"
    tables.append(two_level_table(micro_runs))
    tables.append(two_level_steps_table(runs, micro_runs, opts.warmup))
    tables.append(provenance_table(runs))
    tables = [t for t in tables if not t.empty]
    figs = figures(runs, out / "figures", opts)
    lines = ["# syncbench report", "", f"{len(runs)} training run(s), {len(micro_runs)} microbenchmark file(s)."]
    if opts.target is not None:
        lines.append(f"Target accuracy for time-to-accuracy: {100 * opts.target:g} %.")
    lines += ["", model_note] if model_note else [""]
    lines += unfinished_notes(runs)
    for table in tables:
        table.save(out)
        lines.append(table.markdown())
    lines.append("## Figures\n")
    lines += [f"![{p.stem}](figures/{p.name})\n" for p in figs if p.suffix == ".png"]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path, tables

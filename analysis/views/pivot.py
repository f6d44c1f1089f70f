"""Pivot tables over a sweep: rows are combinations of all swept options but the last, columns the last one's
values, cells a metric pooled over the repeats of that combination (mean +- 95 % CI, n).

Swept options are found from the files, not from the spec: within runs of one strategy, model and dataset,
every option of the experiment (:func:`analysis.stats.groups.experiment`) that takes more than one value, plus the
rank count when it varies. So a report over ``bench sweep`` output (or runs made by hand) pivots the same way.
"""

from __future__ import annotations

import itertools
import json

from analysis.data.load import RunResults
from analysis.stats.accuracy import final_accuracy, time_to_accuracy
from analysis.stats.groups import experiment
from analysis.stats.intervals import estimate
from analysis.stats.metrics import row_unit
from analysis.views.tables import EST, Column, Table


def workload_of(run: RunResults) -> dict:
    return experiment(run) | {"ranks": run.world_size}


def swept_options(runs: list[RunResults]) -> list[str]:
    """Options with more than one value among ``runs``, in config order (ranks last)."""
    seen: dict[str, set] = {}
    for run in runs:
        for key, value in workload_of(run).items():
            seen.setdefault(key, set()).add(json.dumps(value, sort_keys=True))
    keys = [k for k, values in seen.items() if len(values) > 1 and k != "scaling"]
    return sorted(keys, key=lambda k: (k == "ranks", list(seen).index(k)))


def families(runs: list[RunResults]) -> dict[tuple, list[RunResults]]:
    out: dict[tuple, list[RunResults]] = {}
    for run in runs:
        out.setdefault((run.strategy, run.config.get("model"), run.config.get("dataset")), []).append(run)
    return out


def _metrics(target: float | None, unit: str):
    yield "final test accuracy (%)", 1, 100, final_accuracy
    if target is not None:
        yield f"{unit}s to {100 * target:g} % accuracy", 1, 1, lambda r: time_to_accuracy(r, target).rows
        yield f"train s to {100 * target:g} % accuracy", 2, 1, lambda r: time_to_accuracy(r, target).seconds


def pivot_tables(runs: list[RunResults], target: float | None = None) -> list[Table]:
    tables = []
    for (strategy, model, dataset), members in sorted(families(runs).items(), key=lambda kv: str(kv[0])):
        keys = swept_options(members)
        if not keys:
            continue
        row_keys, col_key = keys[:-1], keys[-1]
        values = {k: sorted({json.dumps(workload_of(r).get(k)) for r in members}) for k in keys}
        for title, decimals, scale, metric in _metrics(target, row_unit(members[0])):
            cols = [Column(k) for k in row_keys]
            cols += [Column(f"{col_key} = {_shown(v)}", EST, decimals, scale, show_n=True) for v in values[col_key]]
            rows = []
            for combo in itertools.product(*(values[k] for k in row_keys)):
                cells = []
                for v in values[col_key]:
                    want = dict(zip(row_keys, combo)) | {col_key: v}
                    pool = [r for r in members if all(json.dumps(workload_of(r).get(k)) == x for k, x in want.items())]
                    cells.append(estimate(metric(r) for r in pool) if pool else None)
                if any(c is not None for c in cells):
                    rows.append([_shown(x) for x in combo] + cells)
            name = f"pivot_{strategy}_{model}_{dataset}_{len(tables)}"
            tables.append(
                Table(name, f"{strategy} {model}/{dataset}: {title} over {', '.join(keys)}", cols, rows, PIVOT_NOTES)
            )
    return tables


def _shown(encoded: str):
    """A swept value (JSON-encoded) as a reader sees it."""
    return shown(json.loads(encoded))


def shown(value):
    """An empty option (e.g. no ``--byzantine``) reads "none" in tables and legends."""
    return "none" if value in ("", None) else value


PIVOT_NOTES = [
    "cells: mean ± half-width of the 95 % t interval over repeats (n runs; for time-to-accuracy, n counts the "
    "runs that reached the target; – where none did or the combination was not run)"
]

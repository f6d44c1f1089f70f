"""``python -m analysis tables RESULTS... [-o report/] [--warmup N]``: speedup/efficiency and communication
tables from results files (files or folders of ``*.h5``). Needs numpy and h5py only: no MPI, no torch.

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


def load_all(paths: list[str]) -> list:
    runs = []
    for path in find_files(paths):
        try:
            run = load(path)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tables = sub.add_parser("tables", help="speedup and communication tables")
    tables.add_argument("paths", nargs="+", help="results files or folders of *.h5")
    tables.add_argument("-o", "--out", default="", help="folder for .md/.csv/.tex copies (default: print only)")
    tables.add_argument("--warmup", type=int, default=1, help="steps left out at the start of each run (default: 1)")
    args = parser.parse_args(argv)
    runs = load_all(args.paths)
    if not runs:
        print(f"analysis: no readable results files in {' '.join(args.paths)}", file=sys.stderr)
        return 1
    for table in build_tables(runs, args.warmup):
        print(table.markdown())
        if args.out:
            table.save(Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

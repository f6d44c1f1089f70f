"""Progressive layer freezing against training without it (issue 33): ring on 2 and 4 ranks, the transformer and
resnet20, with and without ``--freeze auto:ALPHA`` (with ``--cache``, also with ``--freeze-cache``), ``--seeds`` seeds
each, every run its own ``mpiexec`` job; then, per setting, the table of :mod:`analysis.views.freezing` with the
target accuracy set to the run without freezing's final accuracy minus 1 point, and the goal: time to that target
with freezing <= 0.75 x without (transformer).

    python -m bench.perf.freeze [--ranks 2,4] [--models transformer,resnet20] [--steps 300] [--seeds 3] [--cache]
                                [--keep DIR]
    python -m bench.perf.freeze --report DIR   # the tables again, from a --keep folder

Defaults: digits (8x8 images: the transformer reads 8 rows as tokens), batch 32 per rank, SGD lr 0.05 momentum
0.9, an evaluation every 25 steps, ``--freeze auto:0.5 --freeze-every 50``. On this 2-core machine 4 ranks are
oversubscribed: their times are not a speedup a cluster would see.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from analysis.data.load import load
from analysis.stats.accuracy import final_accuracy, time_to_accuracy
from analysis.stats.metrics import compute_ranks, step_stats
from analysis.views.freezing import freeze_label, freezing_table, frozen, setting
from bench.perf.runs import add_repeat_options, results_dir, train


def run(args, ranks: int, model: str, freeze: str, cache: bool, seed: int, work: Path) -> Path:
    out = work / f"{model}_p{ranks}_{freeze.replace(':', '') or 'none'}{'_cache' * cache}_s{seed}.h5"
    cmd = ["--strategy", "ring", "--model", model, "--dataset", args.dataset, "--steps", str(args.steps)]
    cmd += ["--batch-size", "32", "--lr", str(args.lr), "--momentum", "0.9", "--eval-every", str(args.eval_every)]
    cmd += ["--freeze", freeze, "--freeze-every", str(args.freeze_every), "--freeze-unit", args.unit] if freeze else []
    cmd += ["--freeze-cache"] if cache else []
    return train(ranks, [*cmd, "--seed", str(seed)], out)


def late_phase(runs) -> list[str]:
    """Per setting and way of freezing, over the last third of the steps (the prefix has stopped growing): forward
    and step time (forward: summed over layers, mean over computing ranks and rows; step: the report's median, the
    slowest rank's per row), and the share of samples the cache served; means over the seeds."""
    lines = [
        "### The last third of the steps (the prefix no longer grows)",
        "",
        "| strategy | model | ranks | freeze | n | forward (ms) | step median (ms) | from cache (%) | runs |",
        "|:---|:---|---:|:---|---:|---:|---:|---:|:---|",
    ]
    rows: dict = {}
    for r in runs:
        start = 2 * r.data["timing/total"].shape[1] // 3
        late = slice(start, None)
        ranks = compute_ranks(r)  # a parameter server neither computes nor caches
        hits = r.data.get("freeze/cache_hits")
        share = np.asarray(hits)[ranks, late].mean() / r.attrs["per_rank_batch"] if hits is not None else np.nan
        forward = np.asarray(r.data["timing/forward"])[ranks, late].sum(axis=2).mean()
        step = step_stats(r, start).median_s  # the report's step median, over the late rows
        rows.setdefault((setting(r), freeze_label(r)), []).append((forward, step, share, r.name))
    for ((ranks, strategy, model, *_), label), values in sorted(rows.items()):
        f, s, c = np.mean([v[:3] for v in values], axis=0)
        runs = values[0][3] + (f" (+{len(values) - 1})" if len(values) > 1 else "")
        lines.append(f"| {strategy} | {model} | {ranks} | {label} | {len(values)} | {1e3 * f:.2f} | {1e3 * s:.2f} | "
                     f"{'–' if np.isnan(c) else f'{100 * c:.1f}'} | {runs} |")  # fmt: skip
    return [*lines, ""]


def report(runs) -> list[str]:
    """Per setting: the table at target = the plain runs' mean final accuracy - 1 point, and the time ratio."""
    lines = []
    for key in sorted({setting(r) for r in runs}):
        mine = [r for r in runs if setting(r) == key]
        plain = [r for r in mine if not frozen(r)]
        if not plain or len(plain) == len(mine):
            continue
        target = round(float(np.mean([final_accuracy(r) for r in plain])) - 0.01, 3)  # to 0.1 point
        lines.append(freezing_table(mine, 1, target).markdown())
        seconds = {label: [time_to_accuracy(r, target).seconds for r in mine if freeze_label(r) == label]
                   for label in sorted({freeze_label(r) for r in mine})}  # fmt: skip
        reached = {label: [s for s in v if np.isfinite(s)] for label, v in seconds.items()}
        plain_s = reached.pop(freeze_label(plain[0]))
        for label, times in reached.items():
            head = (
                f"{key[1]} {key[2]} on {key[0]} ranks, {label}: training seconds to {100 * target:.1f} % with / without"
            )
            if not times or not plain_s:
                lines.append(f"{head}: not reached by {'these runs' if plain_s else 'any run'}")
                continue
            ratio = np.mean(times) / np.mean(plain_s)
            verdict = "met" if ratio <= 0.75 else "NOT met"
            lines.append(f"{head} = {ratio:.2f}, over the runs that reached it (goal <= 0.75 on the transformer: "
                         f"{verdict})")  # fmt: skip
        lines.append("")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=lambda s: [int(r) for r in s.split(",")], default=[2, 4])
    p.add_argument("--models", type=lambda s: s.split(","), default=["transformer", "resnet20"])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--freeze", default="auto:0.5")
    p.add_argument("--freeze-every", type=int, default=50)
    p.add_argument("--unit", default="layer", choices=("layer", "block"), help="--freeze-unit (default: layer)")
    p.add_argument("--cache", action="store_true", help="also run --freeze with --freeze-cache")
    p.add_argument("--report", metavar="DIR", help="no runs: report on the results files in DIR (a --keep folder)")
    add_repeat_options(p)
    args = p.parse_args(argv)
    if args.report:
        runs = [load(f) for f in sorted(Path(args.report).glob("*.h5"))]
        print("\n".join(report(runs) + late_phase(runs)))
        return 0
    with results_dir(args.keep) as work:
        files = []
        for ranks in args.ranks:
            for model in args.models:
                for freeze, cache in (("", False), (args.freeze, False), *([(args.freeze, True)] * args.cache)):
                    for seed in range(args.seeds):
                        files.append(run(args, ranks, model, freeze, cache, seed, work))
                        label = f"{freeze or 'no freezing'}{' + cache' * cache}"
                        print(f"  ran {model} on {ranks} ranks, {label}, seed {seed}", flush=True)
        runs = [load(f) for f in files]
        print("\n".join(report(runs) + late_phase(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

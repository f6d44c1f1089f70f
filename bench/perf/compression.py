"""Compressed gradient communication against the dense ring, one table per model, from one run of this script.

    python -m bench.perf.compression [--ranks 4] [--workloads cnn resnet20 fedavg] [--methods ...] [--keep DIR]

For each workload (``ring`` on cnn/digits and on resnet20/synthetic at ``--ranks``; ``fedavg`` with 256 clients,
C = 0.1, on ``--fedavg-ranks`` 8, ``--placement static``): every ``--compress`` method (error feedback as
``auto``: on for top-k, random-k, sign and PowerSGD; fedavg has no PowerSGD), same data, batch, seed and steps
(rounds), each its own ``mpiexec`` job, run one after another.
Printed (read from the results files through :mod:`analysis.views.compress`, as the report reads them): bytes a
rank sent per step and as a share of the dense ring's, median step, compression's share of the step, final test
accuracy. Goals (issue 16): ``topk:0.01`` <= 2.5 % of dense bytes and, with error feedback, within 2 accuracy
points of dense on digits at equal steps; ``fp16`` exactly half; ``powersgd:2`` on resnet20 <= 10 % of dense.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from analysis.data.load import load
from analysis.stats.accuracy import final_accuracy
from analysis.stats.metrics import oversubscribed, step_stats
from analysis.views.compress import bytes_per_step, compress_share, dense_ratio
from bench.sweep import find_mpiexec

METHODS = ["none", "fp16", "bf16", "topk:0.01", "randk:0.01", "qsgd:16", "sign", "powersgd:2"]
CNN = ["--model", "cnn", "--dataset", "digits", "--batch-size", "32"]
FEDAVG = ["--strategy", "fedavg", *CNN, "--clients", "256", "--fraction", "0.1", "--partition", "dirichlet"]
WORKLOADS = {  # name: (arguments with the evaluation interval, steps or rounds, the option that counts them)
    "cnn": (["--strategy", "ring", *CNN, "--eval-every", "25"], 300, "--steps"),
    "resnet20": (
        ["--strategy", "ring", "--model", "resnet20", "--dataset", "synthetic", "--synthetic-shape", "3x32x32"],
        40,
        "--steps",
    ),
    "fedavg": (
        [*FEDAVG, "--alpha", "0.5", "--local-epochs", "1", "--placement", "static", "--eval-every", "2"],
        20,
        "--rounds",
    ),
}


def run_one(ranks: int, workload: str, method: str, steps: int, out: Path) -> dict:
    args, _, counted = WORKLOADS[workload]
    cmd = [find_mpiexec(), "-n", str(ranks), sys.executable, "-m", "bench", "train", *args]
    cmd += ["--compress", method, counted, str(steps), "--quiet", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"--compress {method} ({workload}, {ranks} ranks) failed:\n{proc.stderr[-3000:]}")
    run = load(out)
    return {
        "bytes": bytes_per_step(run, 1),
        "dense": dense_ratio(run, 1),
        "step": step_stats(run, warmup=1).median_s,
        "compress": compress_share(run, 1),
        "accuracy": final_accuracy(run),
        "over": oversubscribed(run),
    }


def table(ranks: int, workload: str, methods: list[str], steps: int, work: Path) -> None:
    if workload == "fedavg":
        methods = [m for m in methods if not m.startswith("powersgd")]  # needs all-reduces: ring and localsgd
    rows = {
        m: run_one(ranks, workload, m, steps, work / f"{workload}_{ranks}_{m.replace(':', '-')}.h5") for m in methods
    }
    over = any(r["over"] for r in rows.values())
    unit = WORKLOADS[workload][2].strip("-")
    print(f"\n{workload}, {ranks} ranks{' (oversubscribed)' if over else ''}, {steps} {unit}")
    row = unit[:-1]
    print(
        f"  {'method':12s} {'KiB/' + row:>9s} {'% dense':>8s} {row + ' ms':>8s} {'compress %':>10s} {'accuracy %':>10s}"
    )
    for m, r in rows.items():
        print(
            f"  {m:12s} {r['bytes'] / 1024:9.1f} {100 * r['dense']:8.2f} {1e3 * r['step']:8.2f} "
            f"{100 * r['compress']:10.1f} {100 * r['accuracy']:10.2f}"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--fedavg-ranks", type=int, default=8)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--steps", type=int, default=0, help="steps (rounds) for every workload (0: 300, 40, 20)")
    parser.add_argument("--keep", default="", help="keep the results files here (for analysis report / model)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="syncbench-compress-") as work:
        folder = Path(args.keep or work)
        folder.mkdir(parents=True, exist_ok=True)
        for workload in args.workloads:
            ranks = args.fedavg_ranks if workload == "fedavg" else args.ranks
            table(ranks, workload, args.methods, args.steps or WORKLOADS[workload][1], folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())

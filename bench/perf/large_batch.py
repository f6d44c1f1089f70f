"""A large-batch study in the spirit of the course's track A: ``ring`` on resnet20 (synthetic CIFAR-shaped data, or
CIFAR-10 files with ``--data-dir``), global batch from 32 up across ranks, SGD against LARS and LAMB, each with
linear warm-up, at equal epochs; one table of final test accuracy and time.

    python -m bench.perf.large_batch [--ranks 2] [--batches 32 256 1024] [--epochs 15] [--micro-batch 128]
                                     [--samples 5120] [--keep DIR]

The global batch grows across ranks first; beyond ranks x ``--micro-batch`` it grows by gradient accumulation
(``train --accumulate-steps K``: K micro-batches per update on every rank), as on a machine whose ranks cannot
hold the batch at once.

Learning rates (printed with the table): SGD follows the linear scaling rule (Goyal et al. 2017: lr = 0.05 x
B / 32, momentum 0.9); LARS lr = 1.0 x sqrt(B / 32) with trust coefficient 0.001 and momentum 0.9 (at B = 32,
lr 0.0625 reached 34 % and lr 1 68 % here; lr 8 at B = 512 diverged through the biases and norms, which take the
plain rate); LAMB lr = 0.002 x sqrt(B / 32) (You et al. 2020's square-root scaling).
Warm-up: the first 10 % of the steps. Weight decay 5e-4 everywhere. These are starting points, not tuned values:
the table says what they gave here.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from analysis.data.load import load
from analysis.stats.accuracy import final_accuracy
from analysis.stats.metrics import step_stats
from bench.sweep import find_mpiexec


def learning_rate(optimizer: str, batch: int) -> float:
    return {"sgd": 0.05 * batch / 32, "lars": 1.0 * math.sqrt(batch / 32), "lamb": 0.002 * math.sqrt(batch / 32)}[
        optimizer
    ]


def accumulation(batch: int, ranks: int, micro: int) -> int:
    """Micro-batches per update so that no rank's micro-batch exceeds ``micro``."""
    if batch % ranks:
        raise SystemExit(f"global batch {batch} does not split over {ranks} ranks")
    k = max(1, math.ceil(batch / (ranks * micro)))
    if (batch // ranks) % k:
        raise SystemExit(f"per-rank batch {batch // ranks} does not split into {k} micro-batches of <= {micro}")
    return k


def run(args, optimizer: str, batch: int, out: Path) -> dict:
    train = 50000 if args.data_dir else int(args.samples * 0.8)  # the default --test-fraction 0.2 held out
    steps = max(1, args.epochs * train // batch)
    data = ["--dataset", "cifar10", "--data-dir", args.data_dir] if args.data_dir else ["--dataset", "synthetic"]
    cmd = [find_mpiexec(), "-n", str(args.ranks), sys.executable, "-m", "bench", "train", "--strategy", "ring"]
    cmd += ["--model", "resnet20", *data, "--synthetic-shape", "3x32x32", "--synthetic-samples", str(args.samples)]
    k = accumulation(batch, args.ranks, args.micro_batch)
    cmd += ["--global-batch-size", str(batch), "--accumulate-steps", str(k), "--steps", str(steps)]
    cmd += ["--optimizer", optimizer]
    cmd += ["--lr", f"{learning_rate(optimizer, batch):.6g}", "--lr-warmup-steps", str(max(1, steps // 10))]
    cmd += ["--weight-decay", "5e-4", "--eval-every", "0", "--quiet", "--out", str(out)]
    if optimizer in ("sgd", "lars"):
        cmd += ["--momentum", "0.9"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"{optimizer} B={batch} failed:\n{proc.stderr[-3000:]}")
    result = load(out)
    return {"steps": steps, "k": k, "accuracy": final_accuracy(result), "step": step_stats(result, 1).median_s}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--batches", type=int, nargs="+", default=[32, 256, 1024])
    p.add_argument("--optimizers", nargs="+", default=["sgd", "lars", "lamb"])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--micro-batch", type=int, default=128, help="largest per-rank micro-batch; beyond: accumulate")
    p.add_argument("--samples", type=int, default=5120, help="synthetic samples (train + test)")
    p.add_argument("--data-dir", default="", help="CIFAR-10 files instead of synthetic data")
    p.add_argument("--keep", default="")
    args = p.parse_args(argv)
    what = "CIFAR-10" if args.data_dir else f"{int(args.samples * 0.8)} synthetic training samples"
    print(f"# ring resnet20, {args.ranks} ranks, {args.epochs} epochs of {what}")
    head = f"{'optimizer':>9} {'batch':>6} {'ranks x micro x K':>18} {'lr':>9} {'steps':>6}"
    print(f"{head} {'step ms':>9} {'accuracy %':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for optimizer in args.optimizers:
            for batch in args.batches:
                r = run(args, optimizer, batch, work / f"{optimizer}_b{batch}.h5")
                lr = learning_rate(optimizer, batch)
                split = f"{args.ranks} x {batch // args.ranks // r['k']} x {r['k']}"
                print(f"{optimizer:>9} {batch:>6} {split:>18} {lr:>9.4g} {r['steps']:>6} {1e3 * r['step']:>9.1f} "
                      f"{100 * r['accuracy']:>11.2f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

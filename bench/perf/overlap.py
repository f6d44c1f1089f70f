"""Overlapped gradient communication against the non-overlapped ring and PyTorch DDP, side by side in one run.

    python -m bench.perf.overlap [--ranks 2 4] [--steps 60] [--repeats 3] [--models cnn resnet20] [--keep DIR]
                                 [--device cuda] [--batch-size B]

For each model and rank count: ``ring``, ``ring --overlap`` (communication thread, and progress from the gradient
hooks) and ``ddp`` (gloo), same ``--bucket-mb`` (DDP's first bucket is 1 MiB whatever it is),
data, batch and seed, each its own ``mpiexec`` job, interleaved over ``--repeats`` so a drifting machine slows all
alike. Printed per configuration (median over repeats): median step (slowest rank per step, step 0 left out), the
communication the training thread waited for as a share of the step, and the overlap percentage (HTA: overlapped /
all communication), read from the results files through :mod:`analysis.stats.metrics`, as the report reads them.
Goal (issue 15): ``ring --overlap`` step <= ``ring`` step and <= ``ddp`` step at 2 ranks on both models.
On ``--device cuda`` the hooks variant is left out (it runs on CPU only) and ddp uses NCCL where every rank has a
GPU of its own, gloo otherwise (the results file's ``strategy_info`` says which).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from analysis.data.load import load
from analysis.stats.metrics import overlap_split, oversubscribed, step_stats
from bench.sweep import find_mpiexec

VARIANTS = {"ring": ["--strategy", "ring"], "ring --overlap": ["--strategy", "ring", "--overlap"]}
VARIANTS["ring --overlap, hooks"] = ["--strategy", "ring", "--overlap", "--overlap-progress", "hooks"]
VARIANTS["ddp"] = ["--strategy", "ddp"]
MODELS = {
    "cnn": ["--model", "cnn", "--dataset", "digits", "--batch-size", "32"],
    "resnet20": ["--model", "resnet20", "--dataset", "synthetic", "--synthetic-shape", "3x32x32", "--batch-size", "16"],
}


def run_one(ranks: int, model: str, variant: str, args, out: Path) -> dict:
    cmd = [find_mpiexec(), "-n", str(ranks), sys.executable, "-m", "bench", "train", *VARIANTS[variant]]
    cmd += [*MODELS[model], "--steps", str(args.steps), "--bucket-mb", str(args.bucket_mb), "--eval-every", "0"]
    cmd += ["--device", args.device, *(["--batch-size", str(args.batch_size)] if args.batch_size else [])]
    cmd += ["--quiet", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{variant} ({model}, {ranks} ranks) failed:\n{proc.stderr[-3000:]}")
    run = load(out)
    split = overlap_split(run, warmup=1)
    return {
        "step": step_stats(run, warmup=1).median_s,
        "exposed": split.exposed_s / split.step_s if split.step_s else 0.0,
        "overlap": split.overlap_percent,
        "over": oversubscribed(run),
    }


def compare(ranks: int, model: str, args, work: Path) -> None:
    variants = [v for v in VARIANTS if args.device == "cpu" or "hooks" not in v]
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for rep in range(args.repeats):
        for variant in variants:
            out = work / f"{model}_{ranks}_{variant.replace(' ', '').replace(',', '_')}_{rep}.h5"
            results[variant].append(run_one(ranks, model, variant, args, out))
    over = any(r["over"] for rs in results.values() for r in rs)
    print(f"\n{model}, {ranks} ranks{' (oversubscribed)' if over else ''} on {args.device}, --bucket-mb "
          f"{args.bucket_mb}, {args.steps} steps, median of {args.repeats} interleaved repeats")  # fmt: skip
    print(f"  {'variant':22s} {'step ms':>9s} {'/ ring':>7s} {'exposed % of step':>18s} {'overlap %':>10s}")
    base = statistics.median(r["step"] for r in results["ring"])
    for variant, rs in results.items():
        step = statistics.median(r["step"] for r in rs)
        exposed = statistics.median(r["exposed"] for r in rs)
        overlap = statistics.median(r["overlap"] for r in rs)
        shown = f"{overlap:10.1f}" if overlap == overlap else f"{'-':>10s}"  # NaN: no communication (1 rank)
        print(f"  {variant:22s} {1e3 * step:9.2f} {step / base:7.2f} {100 * exposed:18.1f} {shown}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--bucket-mb", type=float, default=0.25, help="bucket size for every variant (ddp: after its 1 MiB first one)"
    )
    parser.add_argument("--keep", default="", help="keep the results files in this folder (for analysis model)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=0, help="per-rank batch for every model (0: as listed)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="syncbench-overlap-") as work:
        folder = Path(args.keep or work)
        folder.mkdir(parents=True, exist_ok=True)
        for model in args.models:
            for ranks in args.ranks:
                compare(ranks, model, args, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput of ring, ps sync, ps async and ssp with one straggler, side by side in one run.

    python -m bench.perf.stragglers [--ranks 8] [--factor 3] [--steps 100] [--model cnn] [--rounds 2]

Each configuration runs as its own ``mpiexec`` job, and the configurations are interleaved over ``--rounds`` rounds
(ring, ps, async, ssp, ring, ...) so that a shared, noisy machine slows all of them alike; the median over rounds is
printed. The straggler is the last rank (a worker in every strategy), slowed ``--factor`` times by sleeping
(``--straggler``). Throughput is what each run's summary reports: samples trained / training seconds. For ps async
and ssp, ``--steps`` is a budget of steps * W gradients shared by all workers, so fast workers take more steps.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

import h5py

from bench.sweep import find_mpiexec

CONFIGS = {
    "ring": ["--strategy", "ring"],
    "ps sync": ["--strategy", "ps", "--ps-mode", "sync"],
    "ps async": ["--strategy", "ps", "--ps-mode", "async"],
    "ssp s=2": ["--strategy", "ssp", "--staleness", "2"],
}


def run_one(name: str, args, extra: list[str], ranks: int, out: str) -> dict:
    cmd = [
        find_mpiexec(),
        "-n",
        str(ranks),
        sys.executable,
        "-m",
        "bench",
        "train",
        *CONFIGS[name],
        *extra,
        "--out",
        out,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    rate = float(re.search(r"throughput\s+([\d.]+) samples/s", proc.stdout).group(1))
    with h5py.File(out) as f:
        wait = f["timing/wait"][()].sum()
        steps = f["timing/steps_done"][()]
        stale = f["ps/updates/staleness"][()] if "ps/updates/staleness" in f else None
        blocked = f["ps/blocked"][()].sum() if "ps/blocked" in f else 0.0
        acc = float(f["metrics/test_accuracy"][-1])
    return {"rate": rate, "wait": wait, "steps": steps, "stale": stale, "blocked": blocked, "acc": acc}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ranks", type=int, default=8)
    p.add_argument("--factor", type=float, default=3.0)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--model", default="cnn")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument(
        "--dist",
        default="",
        help="instead of one fixed straggler: every rank's random per-step "
        "slowdown, e.g. lognormal:1.0 (--straggler-dist)",
    )
    args = p.parse_args(argv)
    slow = args.ranks - 1
    extra = ["--model", args.model, "--dataset", args.dataset, "--steps", str(args.steps), "--quiet"]
    extra += ["--threads", "1", "--eval-every", "0"]
    extra += ["--straggler-dist", args.dist] if args.dist else ["--straggler", f"{slow}:{args.factor:g}"]
    results: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in CONFIGS:
                out = os.path.join(tmp, f"{name.replace(' ', '_').replace('=', '')}_{r}.h5")
                results[name].append(run_one(name, args, extra, args.ranks, out))
                print(f"round {r + 1}/{args.rounds} {name:9s} {results[name][-1]['rate']:9.1f} samples/s", flush=True)
    base = statistics.median(x["rate"] for x in results["ps sync"])
    slowdown = f"every rank slowed at random ({args.dist})" if args.dist else f"rank {slow} slowed x{args.factor:g}"
    print(
        f"\n{args.ranks} ranks, {args.model} on {args.dataset}, {slowdown}, "
        f"budget {args.steps} steps; median of {args.rounds} interleaved rounds"
    )
    print(
        f"{'strategy':10s} {'samples/s':>10s} {'vs ps sync':>10s} {'wait s':>8s} {'blocked s':>9s} "
        f"{'staleness mean/max':>19s} {'steps min..max':>15s} {'test acc':>8s}"
    )
    for name, runs in results.items():
        rate = statistics.median(x["rate"] for x in runs)
        last = runs[-1]
        stale = last["stale"]
        stale_text = f"{stale.mean():.2f}/{stale.max():.0f}" if stale is not None and stale.size else "-"
        steps = last["steps"][last["steps"] > 0]
        print(
            f"{name:10s} {rate:10.1f} {rate / base:10.2f} {last['wait']:8.2f} {last['blocked']:9.2f} "
            f"{stale_text:>19s} {f'{steps.min()}..{steps.max()}':>15s} {100 * last['acc']:7.1f}%"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

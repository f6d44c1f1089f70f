"""The suite's performance goals, each measured side by side in one run and printed with its ratio and verdict.

    python -m bench.perf.kernels [--ranks 4] [--max-mib 64] [--iters 10]

1. Ring all-reduce, ``--ranks`` ranks, 1 MiB .. ``--max-mib`` MiB: median time within 1.10x of the MPI library's
   ``Allreduce`` at every size (ours, mpi and gloo interleaved in one ``micro`` run).
2. The same run, up to 4 MiB: at least 2x faster than torch.distributed's gloo ``all_reduce``.
3. Small messages: our all-reduce at 8 B within 2x of MPI's (latency-bound: the recursive-doubling path).
4. Instrumentation: per-layer hooks + Recorder add at most 3% to a training step, for cnn and resnet20
   (``python -m bench overhead``: instrumented and plain steps interleaved in one process).
A goal that misses is reported as such; nothing here is a test (timings on a shared machine are noisy).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

import h5py
import numpy as np

from bench.perf.stragglers import mpiexec


def micro(ranks: int, out: str, impls: str, lo: int, hi: int, args, iters: int = 0) -> dict[str, np.ndarray]:
    """One ``bench micro`` all-reduce run of ``impls`` (interleaved) from ``lo`` to ``hi`` bytes; medians."""
    cmd = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "bench", "micro", "--out", out, "--impl", impls]
    cmd += ["--min", str(lo), "--max", str(hi), "--iters", str(iters or args.iters), "--min-iters", str(args.min_iters)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3000)
    if proc.returncode != 0:
        raise SystemExit(f"micro failed:\n{proc.stderr[-3000:]}")
    with h5py.File(out) as f:
        group = f["micro/allreduce"]
        sizes = group["ours/size_bytes"][()]
        return {"size": sizes} | {impl: np.nanmedian(group[f"{impl}/time_s"][()], axis=1) for impl in group}


def overhead(model: str) -> float:
    cmd = [sys.executable, "-m", "bench", "overhead", "--model", model, "--steps", "200"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        raise SystemExit(f"overhead failed:\n{proc.stderr[-3000:]}")
    return float(re.search(r"overhead\s+([+-][\d.]+) %", proc.stdout).group(1)) / 100


def verdict(ok: bool) -> str:
    return "holds" if ok else "MISSES"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ranks", type=int, default=4)
    p.add_argument("--max-mib", type=int, default=64)
    p.add_argument("--iters", type=int, default=160, help="micro --iters (about this many MiB per size)")
    p.add_argument("--min-iters", type=int, default=20, help="micro --min-iters for the large sizes")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        # gloo keeps threads alive once initialised, so it gets its own run (ours beside it again)
        big = micro(args.ranks, os.path.join(tmp, "big.h5"), "ours,mpi", 1 << 20, args.max_mib << 20, args)
        gloo = micro(args.ranks, os.path.join(tmp, "gloo.h5"), "ours,gloo", 1 << 20, 4 << 20, args)
        small = micro(args.ranks, os.path.join(tmp, "small.h5"), "ours,mpi", 8, 8, args, iters=300)
    print(f"# performance goals, {args.ranks} ranks (medians; implementations interleaved in each run)")
    print(
        f"{'size':>10} {'ours ms':>9} {'mpi ms':>9} {'ours/mpi':>9}    {'ours ms':>9} {'gloo ms':>9} {'gloo/ours':>10}"
    )
    for k, size in enumerate(big["size"]):
        o, m = big["ours"][k], big["mpi"][k]
        row = f"{size >> 20:>7} MiB {o * 1e3:9.2f} {m * 1e3:9.2f} {o / m:9.2f}"
        if k < len(gloo["size"]):
            og, g = gloo["ours"][k], gloo["gloo"][k]
            row += f"    {og * 1e3:9.2f} {g * 1e3:9.2f} {g / og:10.2f}"
        print(row)
    worst = float(np.max(big["ours"] / big["mpi"]))
    slowest_gain = float(np.min(gloo["gloo"] / gloo["ours"]))
    small_ratio = float(small["ours"][0] / small["mpi"][0])
    print(
        f"goal 1  ring all-reduce within 1.10x of MPI, 1-{args.max_mib} MiB: worst ours/mpi = {worst:.2f}  "
        f"{verdict(worst <= 1.10)}"
    )
    print(
        f"goal 2  at least 2x faster than gloo up to 4 MiB: smallest gloo/ours = {slowest_gain:.2f}  "
        f"{verdict(slowest_gain >= 2.0)}"
    )
    print(
        f"goal 3  8-byte all-reduce within 2x of MPI: ours/mpi = {small_ratio:.2f} "
        f"({small['ours'][0] * 1e6:.1f} us vs {small['mpi'][0] * 1e6:.1f} us)  {verdict(small_ratio <= 2.0)}"
    )
    for model in ("cnn", "resnet20"):
        o = overhead(model)
        print(f"goal 4  instrumentation overhead, {model}: {100 * o:+.2f} %  {verdict(o <= 0.03)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

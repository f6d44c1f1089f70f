"""What a checkpoint costs against the rows of the same run (issue 29's goal: less than 2 steps): each case runs
``--checkpoint-every 10`` for R rows as its own ``mpiexec`` job, one after another; the numbers are read back from
the results file (``timing/checkpoint``, the rows' ``timing/total``, the slowest rank's per row) and the checkpoint
folder's pieces.

    python -m bench.perf.checkpoint [--ranks 2 4] [--cases ring-resnet20 fedavg-scaffold-256] [--rows 40]

Per case: median row time (rows after the first); the first checkpoint's time (full: every client's state) and
the later ones' mean (incremental: per-client state changed since the last one, bench/runtime/client_state.py);
their cost amortized over a cycle of FULL_EVERY checkpoints (one full) per row (goal < 2); the largest piece (one
rank's state) and every piece kept on disk (the folders back to the last full checkpoint); rank 0's peak resident
memory at the last checkpoint and how much writing checkpoints raised it (from the manifest: goal O(model),
independent of ranks and clients).
Oversubscribed where ranks exceed cores: the table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from bench.runtime.client_state import FULL_EVERY
from bench.sweep import find_mpiexec

CASES = {
    "ring-resnet20": ["--strategy", "ring", "--model", "resnet20", "--dataset", "synthetic", "--synthetic-shape",
                      "3x32x32", "--synthetic-samples", "2048", "--batch-size", "32", "--momentum", "0.9"],
    "ring-transformer": ["--strategy", "ring", "--model", "transformer", "--dataset", "synthetic", "--momentum", "0.9"],
    "fedavg-scaffold-256": ["--strategy", "fedavg", "--fl-algorithm", "scaffold", "--clients", "256", "--fraction",
                            "0.05", "--model", "cnn", "--local-steps", "2"],
    "fedavg-scaffold-4096": ["--strategy", "fedavg", "--fl-algorithm", "scaffold", "--clients", "4096", "--fraction",
                             "0.003", "--model", "cnn", "--local-steps", "2", "--dataset", "synthetic",
                             "--synthetic-shape", "1x8x8", "--synthetic-samples", "40960"],
}  # fmt: skip
"""The 4,096-client case samples about as many clients per round (C = 0.003: 12) as the 256-client one (13): the
rounds cost alike, the client state is 16 times larger (synthetic 8x8 images as digits', 10 per client: digits has
too few samples for 4,096 clients)."""


def measure(name: str, ranks: int, rows: int, work: Path) -> dict:
    out = work / f"{name}_n{ranks}.h5"
    unit = "--rounds" if "fedavg" in CASES[name] else "--steps"
    base = [find_mpiexec(), "-n", str(ranks), sys.executable, "-m", "bench", "train", *CASES[name], unit, str(rows)]
    base += ["--checkpoint-every", "10", "--eval-every", "0", "--quiet", "--out", str(out)]
    t = time.perf_counter()
    subprocess.run(base, check=True, capture_output=True)
    wall = time.perf_counter() - t
    with h5py.File(out) as f:
        total = f["timing/total"][()].max(axis=0)
        ckpt = f["timing/checkpoint"][()].max(axis=0)
    written = ckpt[ckpt > 0]
    memory = json.loads((out.parent / f"{out.name}.ckpt" / "manifest.json").read_text())["rank0_memory_mib"]
    pieces = sorted((out.parent / f"{out.name}.ckpt").glob("row-*/rank-*.npz"))
    sizes = [p.stat().st_size for p in pieces]
    return {
        "case": name, "ranks": ranks, "row_ms": 1e3 * float(np.median(total[1:])),
        "checkpoint_ms": 1e3 * float(written.mean()) if written.size else float("nan"),
        "full_ms": 1e3 * float(written[0]) if written.size else float("nan"),  # a process's first is full
        "later_ms": 1e3 * float(written[1:].mean()) if written.size > 1 else float("nan"),
        "checkpoints": int(written.size), "piece_max_mib": max(sizes, default=0) / 2**20,
        "all_mib": sum(sizes) / 2**20, "wall_s": wall, "rank0_rss_mib": memory["peak_rss"],
        "rank0_raised_mib": memory["raised_by_checkpoints"],
    }  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--rows", type=int, default=40)
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    print(f"{'case':22} {'ranks':>5} {'row (ms)':>9} {'full (ms)':>10} {'incr (ms)':>10} {'amortized/row':>13} "
          f"{'n':>3} {'piece MiB':>9} {'kept MiB':>8} {'r0 RSS MiB':>10} {'r0 +ckpt':>8}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases:
            for ranks in args.ranks:
                r = measure(name, ranks, args.rows, Path(tmp))
                note = "  (oversubscribed)" if ranks > cores else ""
                amortized = (r["full_ms"] + (FULL_EVERY - 1) * r["later_ms"]) / FULL_EVERY
                print(f"{r['case']:22} {ranks:>5} {r['row_ms']:>9.2f} {r['full_ms']:>10.2f} {r['later_ms']:>10.2f} "
                      f"{amortized / r['row_ms']:>13.2f} {r['checkpoints']:>3} {r['piece_max_mib']:>9.2f} "
                      f"{r['all_mib']:>8.2f} {r['rank0_rss_mib']:>10.1f} {r['rank0_raised_mib']:>8.1f}{note}",
                      flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

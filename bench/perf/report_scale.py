"""How long ``python -m analysis report`` takes over a sweep-sized folder: 200 ring files and 50 fedavg files.

    python -m bench.perf.report_scale                 # ~1 min: two real runs, 248 copies, the report timed
    python -m bench.perf.report_scale --ring 400 --fedavg 100

Two real runs (ring on 4 ranks with --trace, fedavg on 3) are copied into a temporary folder with their seed and
learning rate changed in the stored config, so the report sees 10 workloads of many repeats each, as a sweep
leaves them. The report is then run as a user runs it, in a fresh process, and its wall time, figure count and
the files it wrote are printed. Goal (issue 11): 250 files in under 15 s (it took 64 s and wrote 804 figure
files before figures were drawn per group and datasets read lazily).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py

from bench.sweep import find_mpiexec

TINY = ["--model", "cnn", "--quiet"]


def real_run(folder: Path, name: str, ranks: int, args: list[str]) -> Path:
    out = folder / f"{name}.h5"
    cmd = [find_mpiexec(), "-n", str(ranks), sys.executable, "-m", "bench", "train", *TINY, *args, "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    return out


def copies(source: Path, folder: Path, count: int, workloads: int) -> None:
    """``count`` copies of ``source``: workload i % workloads (its lr), repeat i // workloads (its seed)."""
    for i in range(count):
        dest = folder / f"{source.stem}_{i:03d}.h5"
        shutil.copyfile(source, dest)
        with h5py.File(dest, "a") as f:
            cfg = json.loads(f.attrs["config"])
            cfg["lr"] = 0.01 * (1 + i % workloads)
            cfg["seed"] = i // workloads
            cfg["out"] = str(dest)
            f.attrs["config"] = json.dumps(cfg, sort_keys=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ring", type=int, default=200)
    p.add_argument("--fedavg", type=int, default=50)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work, results = Path(tmp), Path(tmp) / "results"
        results.mkdir()
        ring = real_run(work, "ring", 4, ["--strategy", "ring", "--steps", "100", "--trace", "--eval-every", "20"])
        fed = real_run(work, "fedavg", 3, ["--strategy", "fedavg", "--clients", "64", "--rounds", "20"])
        copies(ring, results, args.ring, 5)
        copies(fed, results, args.fedavg, 5)
        t = time.perf_counter()
        cmd = [sys.executable, "-m", "analysis", "report", str(results), "-o", str(work / "report")]
        cmd += ["--target-accuracy", "0.5"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        figures = list((work / "report" / "figures").iterdir())
        tables = list((work / "report").glob("*.md"))
        print(f"analysis report over {args.ring} ring + {args.fedavg} fedavg files (10 workloads of repeats)")
        print(f"  wall time      {wall:8.2f} s   (goal: under 15 s for 250 files)")
        print(f"  figure files   {len(figures):8d}   tables {len(tables) - 1} (each as .md, .csv, .tex)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

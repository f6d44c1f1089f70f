"""What the benchmark scripts that compare training runs share: each run its own ``mpiexec`` job of ``python -m bench
train`` (a failure stops the script with the run's stderr), and the folder the results files go to (``--keep DIR``,
else a temporary one)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.sweep import find_mpiexec


def add_repeat_options(p: argparse.ArgumentParser, seeds: int = 3) -> None:
    p.add_argument("--seeds", type=int, default=seeds, help=f"runs per variant, seeds 0..N-1 (default {seeds})")
    p.add_argument("--keep", default="", help="write the results files here (default: a temporary directory)")


@contextmanager
def results_dir(keep: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        yield work


def train(ranks: int, options: list[str], out: Path) -> Path:
    """``mpiexec -n RANKS python -m bench train OPTIONS --quiet --out OUT``; the file, or SystemExit on failure."""
    cmd = [find_mpiexec(), "-n", str(ranks), sys.executable, "-m", "bench", "train", *options, "--quiet"]
    proc = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"{out.name} failed:\n{proc.stderr[-3000:]}")
    return out

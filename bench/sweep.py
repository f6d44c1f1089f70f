"""``python -m bench sweep SPEC.toml``: expand a grid of options (plus repeats) into runs, and launch them one after
another under mpiexec (progress and ETA), or write one Slurm job array per rank count (``--slurm``).

    python -m bench sweep bench/sweeps/localsgd_tau.toml              # run here, one after another
    python -m bench sweep bench/sweeps/fedavg_c_e.toml --slurm        # write job arrays, print the sbatch lines
    python -m bench sweep SPEC.toml --dry-run                         # list the runs, launch nothing

A spec has three tables: ``[sweep]`` (``name``, ``ranks`` = a count or a list, ``repeats``, ``out_dir``),
``[base]`` (options every run shares, as in ``bench train --config``) and ``[grid]`` (each option a list of
values; runs are their product). Repeat i runs with seed ``base.seed + i``. Each run gets a config file
``<out_dir>/configs/<run>.toml`` (the exact options it ran with) and a results file named from its swept values,
``<out_dir>/<name>_<option>-<value>..._n<ranks>_s<seed>.h5``. A run whose results file already says ``complete``
is skipped (``--force`` runs it again), so an interrupted sweep resumes where it stopped. ``python -m analysis
report <out_dir>`` then gives pivot tables over the swept options.

This command launches MPI jobs; it is not one (run it without mpiexec).
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.config import FIELDS, build, read_toml
from bench.run.divergence import EXIT_DIVERGED
from bench.runtime.errors import UsageError


def find_mpiexec() -> str:
    """The mpiexec beside this Python (the venv's embedded MPICH), else the one on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if not found:
        raise UsageError("no mpiexec beside the interpreter or on PATH (install the [mpich] extra or load MPI)")
    return found


@dataclass
class Run:
    name: str
    sweep: str
    ranks: int
    options: dict  # every option given to bench train (base + swept values + seed + out)

    @property
    def out(self) -> Path:
        return Path(self.options["out"])


def _slug(value) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return "".join(c if c.isalnum() or c in ".-" else "-" for c in text)


def load_spec(path: str) -> dict:
    spec = read_toml(path, "sweep spec")
    unknown = set(spec) - {"sweep", "base", "grid"}
    if unknown:
        raise UsageError(f"sweep spec {path}: unknown tables {sorted(unknown)}; use [sweep], [base], [grid]")
    for table in ("base", "grid"):
        for key in spec.get(table, {}):
            if key.replace("-", "_") not in FIELDS or key in ("out", "seed") and table == "grid":
                raise UsageError(f"sweep spec {path}: [{table}] {key} is not a bench train option one can set here")
    for key, values in spec.get("grid", {}).items():
        if not isinstance(values, list) or not values:
            raise UsageError(f"sweep spec {path}: [grid] {key} must be a non-empty list of values")
    return spec


def expand(spec: dict, spec_name: str) -> list[Run]:
    """Every run of the spec, in a stable order: grid values in the order given, then ranks, then repeat."""
    head = spec.get("sweep", {})
    name = head.get("name", spec_name)
    ranks = head.get("ranks", 2)
    ranks = ranks if isinstance(ranks, list) else [ranks]
    repeats = int(head.get("repeats", 1))
    if repeats < 1 or not all(isinstance(r, int) and r >= 1 for r in ranks):
        raise UsageError("sweep: repeats and ranks must be positive integers")
    out_dir = Path(head.get("out_dir", f"results/sweeps/{name}"))
    base = {k.replace("-", "_"): v for k, v in spec.get("base", {}).items()}
    grid = {k.replace("-", "_"): v for k, v in spec.get("grid", {}).items()}
    seed0 = int(base.get("seed", 0))
    runs = []
    for values in itertools.product(*grid.values()):
        swept = dict(zip(grid, values))
        for p, i in itertools.product(ranks, range(repeats)):
            label = "_".join([name] + [f"{k}-{_slug(v)}" for k, v in swept.items()] + [f"n{p}", f"s{seed0 + i}"])
            options = base | swept | {"seed": seed0 + i, "out": str(out_dir / f"{label}.h5"), "quiet": True}
            runs.append(Run(label, name, p, options))
    for run in runs:
        build(run.options)  # a bad value fails now, for the whole sweep, not in run 17 of 40
    return runs


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if value == value and abs(value) != float("inf") else f'"{value}"'
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(run: Run) -> Path:
    path = run.out.parent / "configs" / f"{run.name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# bench sweep: run {run.name} on {run.ranks} ranks", "[train]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in run.options.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


FINISHED = ("complete", "diverged")  # a diverged run is a result: running it again gives the same


def is_complete(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("status") in FINISHED
    except (OSError, ValueError):
        return False


def run_locally(runs: list[Run], launcher: list[str], force: bool, timeout: float) -> int:
    """One run after another; a line per run with progress and ETA; failures are listed at the end (exit 1)."""
    failed, durations = [], []
    for i, run in enumerate(runs, 1):
        head = f"[{i}/{len(runs)}] {run.name} ({run.ranks} ranks)"
        if not force and is_complete(run.out):
            print(f"{head}: already finished (complete or diverged), skipped", flush=True)
            continue
        config = write_config(run)
        log = run.out.parent / "logs" / f"{run.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [*launcher, "-n", str(run.ranks), sys.executable, "-m", "bench", "train", "--config", str(config)]
        t = time.perf_counter()
        try:
            with open(log, "w") as fh:
                rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        durations.append(time.perf_counter() - t)
        left = sum(1 for r in runs[i:] if force or not is_complete(r.out))
        eta = left * sum(durations) / len(durations)
        status = {0: "ok", EXIT_DIVERGED: "diverged (a result: status diverged in its file)"}.get(rc)
        outcome = status or f"FAILED ({rc}; log {log})"
        print(f"{head}: {outcome} in {durations[-1]:.1f} s; ETA {eta:.0f} s for {left} more", flush=True)
        if status is None:
            failed.append(run.name)
    if failed:
        print(f"sweep: {len(failed)} of {len(runs)} runs failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"sweep: {len(runs)} runs in {runs[0].out.parent}; python -m analysis report {runs[0].out.parent}")
    return 0


ARRAY_SCRIPT = """#!/bin/bash
#SBATCH --job-name=syncbench-sweep-{name}-n{ranks}
#SBATCH --ntasks={ranks}
#SBATCH --array=1-{count}
#SBATCH --time={time}
#SBATCH --output=logs/%x-%A_%a.out
#SBATCH --signal=B:USR1@120
#
# Written by: python -m bench sweep {spec} --slurm
# One array task per run; line i of {configs} is run i's config (its options and results file).
#   mkdir -p logs && sbatch {script}
export SYNCBENCH_BATCH_SCRIPT=${{SYNCBENCH_BATCH_SCRIPT:-$0}}
# shellcheck source=/dev/null
source "${{SYNCBENCH_DIR:-${{SLURM_SUBMIT_DIR:-.}}}}/slurm/env.sh"
config=$(sed -n "${{SLURM_ARRAY_TASK_ID}}p" "{configs}")
run_bench train --config "$config" --threads "$THREADS" --timeout "$BENCH_TIMEOUT" "$@"
"""


def write_slurm(runs: list[Run], spec_path: str, time_limit: str) -> list[Path]:
    """One job array per rank count (a job array has one task count); returns the scripts written."""
    scripts = []
    for ranks in sorted({r.ranks for r in runs}):
        mine = [r for r in runs if r.ranks == ranks]
        folder = mine[0].out.parent
        configs = folder / f"configs_n{ranks}.txt"
        configs.parent.mkdir(parents=True, exist_ok=True)
        configs.write_text("".join(f"{write_config(r).resolve()}\n" for r in mine))
        script = folder / f"sweep_n{ranks}.sh"
        fields = {"name": mine[0].sweep, "ranks": ranks, "count": len(mine), "time": time_limit}
        text = ARRAY_SCRIPT.format(**fields, spec=spec_path, configs=configs.resolve(), script=script)
        script.write_text(text)
        script.chmod(0o755)
        scripts.append(script)
    return scripts


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench sweep", description=__doc__.split("\n")[0])
    p.add_argument("spec", help="sweep spec (TOML: [sweep], [base], [grid]); examples in bench/sweeps/")
    p.add_argument("--slurm", action="store_true", help="write one Slurm job array per rank count; run nothing")
    p.add_argument("--time", default="00:30:00", help="--slurm: time limit of each array task (default 00:30:00)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their commands; launch nothing")
    p.add_argument("--force", action="store_true", help="run again runs whose results file is complete")
    p.add_argument("--launcher", default="", help="launcher command (default: the mpiexec beside this Python)")
    p.add_argument("--run-timeout", type=float, default=3600, help="seconds before a run is killed (default 3600)")
    args = p.parse_args(argv)
    ranks = os.environ.get("PMI_SIZE") or os.environ.get("OMPI_COMM_WORLD_SIZE") or "1"
    if int(ranks) > 1:
        print("python -m bench sweep launches its own MPI jobs: run it without mpiexec/srun", file=sys.stderr)
        return 2
    try:
        runs = expand(load_spec(args.spec), Path(args.spec).stem)
        if args.dry_run:
            for i, run in enumerate(runs, 1):
                print(f"[{i}/{len(runs)}] -n {run.ranks} {run.name}: {run.options}")
            return 0
        if args.slurm:
            for script in write_slurm(runs, args.spec, args.time):
                print(f"sbatch {script}")
            return 0
        launcher = args.launcher.split() if args.launcher else [find_mpiexec()]
        return run_locally(runs, launcher, args.force, args.run_timeout)
    except UsageError as exc:
        print(f"python -m bench sweep: {exc}", file=sys.stderr)
        return 2

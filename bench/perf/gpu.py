"""The suite's own communication on a GPU against DDP's, sized for a short device lease (issue 30).

    python -m bench.perf.gpu [--ranks 1 2] [--batches 32 128] [--models resnet20 transformer] [--steps 30]
                             [--variants ring ...] [--in-flight 1 2 4] [--device cuda] [--tests]

For each model, per-rank batch and rank count (the ranks share the one GPU): ``ring``, ``ring --overlap``,
``ps --overlap`` (2 ranks and more: a server and workers) and ``ddp`` (NCCL where each rank has a GPU of its own,
gloo otherwise), one ``mpiexec`` job each, and at 1 rank a plain training loop of the same model, batch and
optimizer in this process, with no MPI and no harness (the harness's own cost is ring's step over this one).
Printed per configuration: median step (slowest rank per step, step 0 left out), its ratio to ddp, the exposed
communication as a share of the step, and the path each run's buffers took to MPI (``staging``, with the buckets in
flight). ``--in-flight`` adds ``ring --overlap`` at each of those ``--buckets-in-flight`` at the largest batch and
rank count (what the default is chosen from). ``--tests`` then runs the CUDA tests (tests/mpi at 1 and 2 ranks, and
tests/smoke), each under a time limit.

Goals (issue 30; measured on a GPU only, never in a test): ``ring --overlap`` <= 1.0x ddp at batch 128 and <= 1.1x
at batch 32 on 2 ranks; ``ring --overlap`` <= ``ring``; at 1 rank ring within 5 % of the plain loop.
``--device cpu`` runs the same table on CPU (a check of the script, not of the goals).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py

from analysis.data.load import load
from analysis.stats.metrics import overlap_split, step_stats
from bench.sweep import find_mpiexec

BUCKETS = ["--bucket-mb", "1"]  # ring's and ddp's buckets alike (ps pushes layer by layer)
VARIANTS = {
    "ring": ["--strategy", "ring", *BUCKETS],
    "ring --overlap": ["--strategy", "ring", "--overlap", *BUCKETS],
    "ps --overlap": ["--strategy", "ps", "--overlap"],
    "ddp": ["--strategy", "ddp", *BUCKETS],
}
MODELS = {  # (command-line data options, the sample shape and classes they give, for the plain loop)
    "resnet20": (["--dataset", "synthetic", "--synthetic-shape", "3x32x32"], (3, 32, 32), 10),
    "transformer": (["--dataset", "synthetic", "--synthetic-shape", "1x16x16"], (1, 16, 16), 10),
}
COMMON = ["--eval-every", "0", "--momentum", "0.9", "--quiet"]


def run_job(ranks: int, model: str, batch: int, options: list[str], args, out: Path) -> dict:
    """One ``bench train`` job; its median step, exposed share and staging, from the results file."""
    cmd = [find_mpiexec(), "-n", str(ranks), sys.executable, "-m", "bench", "train", *options, "--model", model]
    cmd += [*MODELS[model][0], "--batch-size", str(batch), "--steps", str(args.steps), "--device", args.device]
    cmd += [*COMMON, "--out", str(out)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.job_timeout)
    except subprocess.TimeoutExpired:
        return {"failed": f"over {args.job_timeout} s"}
    if proc.returncode != 0:
        return {"failed": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    run = load(out)
    split = overlap_split(run, warmup=1)
    with h5py.File(out, "r") as f:
        info = json.loads(f.attrs.get("strategy_info", "{}"))
    staging = info.get("staging", info.get("backend", "-"))
    if "buckets_in_flight" in info:
        staging += f", {info['buckets_in_flight']} in flight"
    return {"step": step_stats(run, warmup=1).median_s, "exposed": split.exposed_s / split.step_s, "path": staging}


def plain_loop_step(model: str, batch: int, args) -> float:
    """Median step of a bare training loop (forward, loss, backward, SGD with momentum 0.9) on one device."""
    import torch
    import torch.nn.functional as F

    from bench.workload.models import build

    _, shape, classes = MODELS[model]
    device = torch.device(args.device)
    net = build(model, shape, classes, seed=0).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        optimizer.zero_grad()
        F.cross_entropy(net(x), y).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def row(name: str, result: dict, ddp: float | None) -> str:
    if "failed" in result:
        return f"  {name:28s} failed: {result['failed'][:80]}"
    step = result["step"]
    ratio = f"{step / ddp:8.2f}" if ddp else f"{'-':>8s}"
    exposed = f"{100 * result['exposed']:10.1f}" if "exposed" in result else f"{'-':>10s}"
    return f"  {name:28s} {1e3 * step:9.2f} {ratio} {exposed}  {result.get('path', '-')}"


def compare(model: str, batch: int, ranks: int, args, work: Path, extra: dict[str, list[str]]) -> None:
    results = {}
    chosen = {name: VARIANTS[name] for name in args.variants}
    for name, options in (chosen | extra).items():
        if name.startswith("ps") and ranks < 2:
            continue  # a server and at least one worker
        results[name] = run_job(ranks, model, batch, options, args, work / f"{model}_{batch}_{ranks}_{len(results)}.h5")
    if ranks == 1:
        results["plain loop (no MPI)"] = {"step": plain_loop_step(model, batch, args), "path": "-"}
    ddp = results.get("ddp", {}).get("step")
    print(f"\n{model}, per-rank batch {batch}, {ranks} rank(s) on one {args.device} device, {args.steps} steps")
    print(f"  {'variant':28s} {'step ms':>9s} {'/ ddp':>8s} {'exposed %':>10s}  path")
    for name, result in results.items():
        print(row(name, result, ddp))
    if ranks == 1 and "step" in results.get("ring", {}):
        plain = results["plain loop (no MPI)"]["step"]
        print(f"  harness cost: ring / plain loop = {results['ring']['step'] / plain:.3f} (goal <= 1.05)")


def run_tests(args) -> None:
    """The CUDA tests, each part under a limit (a lease is short)."""
    mpiexec = find_mpiexec()
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda"]
    parts = [[mpiexec, "-n", str(n), *pytest, "--with-mpi", "tests/mpi"] for n in (1, 2)] + [[*pytest, "tests/smoke"]]
    for cmd in parts:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.job_timeout * 4)
            tail = proc.stdout.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        except subprocess.TimeoutExpired:
            tail = [f"over {args.job_timeout * 4} s"]
        print(f"  {' '.join(cmd[cmd.index('-m') + 1 :][-2:])}: {tail[0]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="VARIANT",
                        help=f"which of: {', '.join(VARIANTS)} (default: all)")  # fmt: skip
    parser.add_argument("--in-flight", type=int, nargs="*", default=[1, 4], help="extra ring --overlap runs")
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--job-timeout", type=int, default=90, help="seconds one job may take")
    parser.add_argument("--keep", default="", help="keep the results files in this folder")
    parser.add_argument("--tests", action="store_true", help="then run the CUDA tests")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="syncbench-gpu-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for model in args.models:
            for batch in args.batches:
                for ranks in args.ranks:
                    largest = batch == max(args.batches) and ranks == max(args.ranks)
                    extra = {
                        f"ring --overlap, {n} in flight": [*VARIANTS["ring --overlap"], "--buckets-in-flight", str(n)]
                        for n in (args.in_flight if largest else [])
                    }
                    compare(model, batch, ranks, args, work, extra)
    print(f"\nbenchmark wall time {time.perf_counter() - started:.0f} s")
    if args.tests:
        run_tests(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

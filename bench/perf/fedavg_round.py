"""FedAvg round time against the simplest alternative: one process running the same rounds (same model, partitions,
sampling, local training and server update), interleaved with ``fedavg`` runs of each aggregation option.

    python -m bench.perf.fedavg_round                          # 3 and 8 ranks, 256 clients, C = 0.1, 3 repeats
    python -m bench.perf.fedavg_round --ranks 3 --repeats 3
    python -m bench.perf.fedavg_round --one-per-rank 33        # 32 clients, C = 0.25, one per client rank

Prints, per configuration, the median round (the aggregator's, after round 0) over repeats, its ratio to the
single-process round measured in the same repeat (median over repeats), the machine's measured parallel capacity
(single-process loops side by side), rank 0's receive time per round, the final accuracy (it must equal
the single process's, up to float64 rounding for host/tree), and the bound: the round's client compute
(forward + backward summed over hosts) / cores, the best any schedule on this machine could do.
Goals (issue 13): 3 ranks <= 0.6x single-process; 8 ranks (4x oversubscribed) <= 1.0x; 33 ranks, rank 0's
receive time with the tree <= 1/3 of per-client.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from analysis.data.load import load
from bench.sweep import find_mpiexec

WORKLOAD = ["--model", "cnn", "--dataset", "digits", "--partition", "dirichlet", "--alpha", "0.5"]
WORKLOAD += ["--local-epochs", "1", "--batch-size", "32", "--lr", "0.1", "--seed", "0"]
EVAL_AT_END = ["--eval-every", "0"]  # like the single process: rounds are not interrupted by test evaluations
VARIANTS = {
    "client, blocking uploads": ["--aggregation", "client", "--upload-buffers", "0", "--placement", "static"],
    "client, 2 upload buffers": ["--aggregation", "client", "--upload-buffers", "2", "--placement", "static"],
    "host": ["--aggregation", "host", "--placement", "static"],
    "tree": ["--aggregation", "tree", "--placement", "static"],
    "client, 2 buffers, balanced": ["--aggregation", "client", "--placement", "balanced"],
    "host, balanced": ["--aggregation", "host", "--placement", "balanced"],
    "tree, balanced": ["--aggregation", "tree", "--placement", "balanced"],
}


def serial_round_times(clients: int, fraction: float, rounds: int) -> tuple[list[float], float]:
    """The single-process loop: every sampled client trained in turn from the global model, folded, one server
    step per round (the algorithm hooks of bench.strategies.fedavg.algorithm, on one core)."""
    import torch

    from bench.config import build
    from bench.strategies.fedavg.registry import algorithm_for
    from bench.workload import data, models, partition

    torch.set_num_threads(1)
    values = dict(zip(WORKLOAD[::2], WORKLOAD[1::2])) | {"--clients": clients, "--fraction": fraction}
    cfg = build({k[2:].replace("-", "_"): v for k, v in values.items()} | {"strategy": "fedavg", "rounds": rounds})
    ds = data.load(cfg)
    model = models.build(cfg.model, ds.shape, ds.classes, cfg.seed)
    parts = partition.make(cfg.partition, ds.y_train, cfg.clients, cfg.seed, alpha=cfg.alpha, groups=ds.groups)
    params = list(model.parameters())
    x_global = torch.cat([p.detach().reshape(-1) for p in params]).numpy().copy()
    algorithm = algorithm_for(cfg, x_global.size)
    times = []
    for r in range(rounds):
        t0 = time.perf_counter()
        aggregate = algorithm.new_aggregate()
        for k in algorithm.configure_round(r):
            models.load_flat(params, x_global)
            n = _train_client(model, cfg, algorithm, ds, parts[int(k)], int(k), r)
            aggregate.add(torch.cat([p.detach().reshape(-1) for p in params]).numpy(), n)
        algorithm.server_update(x_global, aggregate, r)
        times.append(time.perf_counter() - t0)
    models.load_flat(params, x_global)
    from bench.run.context import evaluate

    return times, evaluate(model, ds, torch.device("cpu"))[0]


def _train_client(model, cfg, algorithm, ds, idx, k: int, r: int) -> int:
    """What ClientHost.train does for one client (same batches, same optimizer)."""
    import torch
    import torch.nn.functional as F

    from bench.workload.optim import make_optimizer
    from bench.workload.streams import stream

    x, y = torch.from_numpy(np.ascontiguousarray(ds.x_train[idx])), torch.from_numpy(ds.y_train[idx])
    n, opt, state = len(y), make_optimizer(model.parameters(), cfg), algorithm.begin_client(model)
    batch = min(cfg.batch_size, n)
    for epoch in range(cfg.local_epochs):
        order = stream(cfg.seed, k, r, epoch).permutation(n)
        for lo in range(0, n - batch + 1, batch):
            i = torch.from_numpy(order[lo : lo + batch])
            opt.zero_grad(set_to_none=True)
            algorithm.client_loss(F.cross_entropy(model(x[i]), y[i]), model, state).backward()
            opt.step()
    return n


def fedavg_run(ranks: int, clients: int, fraction: float, rounds: int, variant: list[str], out: str) -> dict:
    args = [*WORKLOAD, "--clients", str(clients), "--fraction", str(fraction), "--rounds", str(rounds)]
    cmd = [find_mpiexec(), "-n", str(ranks), sys.executable, "-m", "bench", "train", "--strategy", "fedavg"]
    cmd += [*args, *EVAL_AT_END, *variant, "--quiet", "--out", out]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"fedavg failed:\n{proc.stderr[-2000:]}")
    d = load(out).data  # the analysis' names, whatever the file's schema
    compute = (d["timing/forward"][1:].sum(axis=(0, 2)) + d["timing/backward"][1:].sum(axis=(0, 2)))[1:]
    return {
        "round": float(np.median(d["timing/step"][0, 1:])),
        "receive": float(np.median(d["fedavg/aggregator_receive"][0, 1:])),
        "bound": float(np.median(compute)) / (os.cpu_count() or 1),
        "accuracy": float(d["metrics/test_accuracy"][-1]),
    }


def serial_median(clients: int, fraction: float, rounds: int) -> None:
    """Print the single-process loop's median round (after round 0), in seconds: for :func:`side_by_side`."""
    print(statistics.median(serial_round_times(clients, fraction, rounds)[0][1:]))


def side_by_side(clients: int, fraction: float, rounds: int, copies: int) -> float:
    """Median round of ``copies`` single-process loops running at once. Against one loop alone it says how much
    parallel work this machine really gives (2.0 on two free cores; less where the cores share a physical core,
    caches or memory bandwidth, or the host takes time away): the limit for any schedule, measured."""
    code = f"from bench.perf.fedavg_round import serial_median; serial_median({clients}, {fraction}, {rounds})"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    return statistics.median(float(p.communicate()[0]) for p in procs)


def compare(ranks: int, clients: int, fraction: float, rounds: int, repeats: int, variants: dict) -> None:
    """Interleaved repeats: in each, the single process alone, ``cores`` of it side by side, then every variant;
    ratios are taken within a repeat (the machine drifts between repeats) and their median printed."""
    cores = os.cpu_count() or 1
    serial, capacity, seen = [], [], {name: [] for name in variants}
    acc_serial = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeats):
            times, acc_serial = serial_round_times(clients, fraction, rounds)
            serial.append(statistics.median(times[1:]))
            capacity.append(cores * serial[-1] / side_by_side(clients, fraction, rounds, cores))
            for name, args in variants.items():
                run = fedavg_run(ranks, clients, fraction, rounds, args, f"{tmp}/{rep}.h5")
                seen[name].append(run | {"ratio": run["round"] / serial[-1]})
    base = statistics.median(serial)
    over = "oversubscribed" if ranks > cores else "not oversubscribed"
    print(f"\n{ranks} ranks ({over}, {cores} cores), {clients} clients, C = {fraction}, {rounds} rounds, ", end="")
    print(f"{repeats} repeats")
    print(f"  single process: median round {1e3 * base:8.2f} ms, accuracy {100 * acc_serial:.2f} %")
    cap = statistics.median(capacity)
    print(
        f"  {cores} single processes side by side do {cap:.2f} loops' worth of work at once "
        f"(per repeat: {', '.join(f'{c:.2f}' for c in capacity)}): no schedule beats {1 / cap:.2f}x here"
    )
    print(f"  {'fedavg':28s} {'round ms':>9s} {'/ single':>9s} {'rank-0 receive ms':>18s}", end="")
    print(f" {'bound ms':>9s} {'acc %':>7s}")
    for name, runs in seen.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"  {name:28s} {1e3 * med['round']:9.2f} {med['ratio']:9.2f} {1e3 * med['receive']:18.3f} "
            f"{1e3 * med['bound']:9.2f} {100 * runs[-1]['accuracy']:7.2f}"
        )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ranks", type=int, nargs="*", default=[3, 8])
    p.add_argument("--clients", type=int, default=256)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--one-per-rank", type=int, default=0, help="also: this many ranks, one client per client rank")
    p.add_argument("--variants", nargs="*", choices=list(VARIANTS), help="run only these (default: all)")
    args = p.parse_args(argv)
    variants = {k: VARIANTS[k] for k in args.variants} if args.variants else VARIANTS
    for ranks in args.ranks:
        compare(ranks, args.clients, args.fraction, args.rounds, args.repeats, variants)
    if args.one_per_rank:
        n = args.one_per_rank
        chosen = {k: VARIANTS[k] for k in ("client, 2 upload buffers", "tree")}
        compare(n, n - 1, 0.25, args.rounds, args.repeats, chosen)
    return 0


if __name__ == "__main__":
    sys.exit(main())

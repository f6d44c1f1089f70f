"""FedAvg round time against the simplest alternative: one process running the same rounds (same model, partitions,
sampling, local training and server update), interleaved with ``fedavg`` runs of each aggregation option.

    python -m bench.perf.fedavg_round                          # 3 and 8 ranks, 256 clients, C = 0.1, 2 repeats
    python -m bench.perf.fedavg_round --ranks 3 --repeats 3
    python -m bench.perf.fedavg_round --one-per-rank 33        # 32 clients, C = 0.25, one per client rank

Prints, per configuration, the median round (the aggregator's, after round 0) over repeats, its ratio to the
single-process round measured in the same run, rank 0's receive time per round, the final accuracy (it must equal
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

import h5py
import numpy as np

from bench.sweep import find_mpiexec

WORKLOAD = ["--model", "cnn", "--dataset", "digits", "--partition", "dirichlet", "--alpha", "0.5"]
WORKLOAD += ["--local-epochs", "1", "--batch-size", "32", "--lr", "0.1", "--seed", "0"]
VARIANTS = {
    "client, blocking uploads": ["--aggregation", "client", "--upload-buffers", "0"],
    "client, 2 upload buffers": ["--aggregation", "client", "--upload-buffers", "2"],
    "host": ["--aggregation", "host"],
    "tree": ["--aggregation", "tree"],
    "client, 2 buffers, balanced": ["--aggregation", "client", "--placement", "balanced"],
    "host, balanced": ["--aggregation", "host", "--placement", "balanced"],
}


def serial_round_times(clients: int, fraction: float, rounds: int) -> tuple[list[float], float]:
    """The single-process loop: every sampled client trained in turn from the global model, folded, one server
    step per round (the algorithm hooks of bench.strategies.fedavg.algorithm, on one core)."""
    import torch

    from bench.config import build
    from bench.strategies.fedavg.algorithm import algorithm_for
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
            _load(params, x_global)
            n = _train_client(model, cfg, algorithm, ds, parts[int(k)], int(k), r)
            aggregate.add(torch.cat([p.detach().reshape(-1) for p in params]).numpy(), n)
        algorithm.server_update(x_global, aggregate.mean())
        times.append(time.perf_counter() - t0)
    _load(params, x_global)
    from bench.run.context import evaluate

    return times, evaluate(model, ds, torch.device("cpu"))[0]


def _load(params, flat: np.ndarray) -> None:
    import torch

    off = 0
    with torch.no_grad():
        for p in params:
            p.copy_(torch.from_numpy(flat[off : off + p.numel()]).reshape(p.shape))
            off += p.numel()


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
    proc = subprocess.run([*cmd, *args, *variant, "--quiet", "--out", out], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"fedavg failed:\n{proc.stderr[-2000:]}")
    with h5py.File(out) as f:
        compute = (f["timing/forward"][1:].sum(axis=(0, 2)) + f["timing/backward"][1:].sum(axis=(0, 2)))[1:]
        return {
            "round": float(np.median(f["timing/step"][0, 1:])),
            "receive": float(np.median(f["fedavg/aggregator_receive"][0, 1:])),
            "bound": float(np.median(compute)) / (os.cpu_count() or 1),
            "accuracy": float(f["metrics/test_accuracy"][-1]),
        }


def compare(ranks: int, clients: int, fraction: float, rounds: int, repeats: int, variants: dict) -> None:
    serial, seen = [], {name: [] for name in variants}
    acc_serial = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeats):  # interleaved: every configuration sees the same drift of the machine
            times, acc_serial = serial_round_times(clients, fraction, rounds)
            serial.append(statistics.median(times[1:]))
            for name, args in variants.items():
                seen[name].append(fedavg_run(ranks, clients, fraction, rounds, args, f"{tmp}/{rep}.h5"))
    base = statistics.median(serial)
    over = "oversubscribed" if ranks > (os.cpu_count() or 1) else "not oversubscribed"
    print(f"\n{ranks} ranks ({over}), {clients} clients, C = {fraction}, {rounds} rounds, {repeats} repeats")
    print(f"  single process: median round {1e3 * base:8.2f} ms, accuracy {100 * acc_serial:.2f} %")
    head = (
        f"  {'fedavg':26s} {'round ms':>9s} {'/ single':>9s} {'rank-0 receive ms':>18s} {'bound ms':>9s} {'acc %':>7s}"
    )
    print(head)
    for name, runs in seen.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"  {name:26s} {1e3 * med['round']:9.2f} {med['round'] / base:9.2f} {1e3 * med['receive']:18.3f} "
            f"{1e3 * med['bound']:9.2f} {100 * runs[-1]['accuracy']:7.2f}"
        )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ranks", type=int, nargs="*", default=[3, 8])
    p.add_argument("--clients", type=int, default=256)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--one-per-rank", type=int, default=0, help="also: this many ranks, one client per client rank")
    args = p.parse_args(argv)
    for ranks in args.ranks:
        compare(ranks, args.clients, args.fraction, args.rounds, args.repeats, VARIANTS)
    if args.one_per_rank:
        n = args.one_per_rank
        chosen = {k: VARIANTS[k] for k in ("client, 2 upload buffers", "tree")}
        compare(n, n - 1, 0.25, args.rounds, args.repeats, chosen)
    return 0


if __name__ == "__main__":
    sys.exit(main())

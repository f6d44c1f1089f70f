"""Flat against hierarchical all-reduce over an emulated inter-node link, beside the inter-node time a two-level
model predicts (issue 31's benchmark).

    python -m bench.perf.topology [--ranks 8] [--per-node 4 2] [--links 10,10 50,1] [--sizes 8 4096 4194304]

For each layout (R ranks as R/K virtual nodes of K) and link (``LATENCY_US,GBPS``, :mod:`bench.comm.emulated_link`):
one ``mpiexec`` job that times both kernels (:class:`kernels.ring_allreduce.RingAllreduce`, which takes recursive
doubling below 128 KiB, and :class:`kernels.hierarchical.HierarchicalAllreduce`) on each size, interleaved, the
median over ``--reps`` calls of the slowest rank's time. Goals: hierarchical <= 0.7x flat at 4 MiB and above on the
1 Gb/s link with 4 ranks per node, <= 0.3x for 8 B-4 KiB.

The model column is the inter-node time only (links from the emulation, latency L and bandwidth B; a node's ranks
share its link; intra-node time, shared memory here, is left out), for the algorithm each kernel runs at that size
(N nodes of K ranks, p = N K, n bytes):
- flat ring: 2 (p - 1) steps, one n / p message crosses each node boundary per step: 2 (p - 1) (L + n / (p B));
- flat recursive doubling: log2 N rounds cross nodes, all K ranks of a node sending n at once: log2 N (L + K n / B);
- hierarchical, large: each node's link carries its K chunk rings' messages, 2 (N - 1) steps: 2 (N - 1)(L + n / (N B))
  (recursive doubling on chunks below 128 KiB: log2 N (L + n / B));
- hierarchical, small: the nodes' first ranks' doubling: log2 N (L + n / B).
On this 2-core machine 8 ranks are oversubscribed: the table says so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

from bench.sweep import find_mpiexec
from kernels.reference import SMALL_BYTES


def model_seconds(kernel: str, n: int, N: int, K: int, latency: float, bandwidth: float) -> float:
    """Inter-node seconds of one all-reduce of ``n`` bytes (see the module docstring)."""
    p, rounds = N * K, math.log2(N) if N > 1 else 0.0
    if N == 1:
        return 0.0
    if kernel == "flat":
        if n < SMALL_BYTES:
            return rounds * (latency + K * n / bandwidth)
        return 2 * (p - 1) * (latency + n / (p * bandwidth))
    if n < SMALL_BYTES:
        return rounds * (latency + n / bandwidth)
    if n / K < SMALL_BYTES:
        return rounds * (latency + n / bandwidth)
    return 2 * (N - 1) * (latency + n / (N * bandwidth))


def worker(per_node: int, link: str, sizes: list[int], reps: int) -> None:
    """Inside the mpiexec job: both kernels on each size; rank 0 prints one JSON line per size."""
    from mpi4py import MPI

    from bench.comm.emulated_link import emulated
    from kernels.hierarchical import HierarchicalAllreduce
    from kernels.ring_allreduce import RingAllreduce
    from kernels.topology import Topology, virtual_nodes

    world = MPI.COMM_WORLD
    nodes = virtual_nodes(world.size, per_node)
    ring = Topology.ring(world.rank, world.size)
    topo = Topology(ring.rank, ring.size, ring.role, ring.ring_ranks, nodes=nodes)
    comm = emulated(world.Dup(), link, nodes)
    kernels = {"flat": RingAllreduce(comm, topo), "hierarchical": HierarchicalAllreduce(comm, topo)}
    for n in sizes:
        buf = np.ones(max(1, n // 4), dtype=np.float32)
        times: dict[str, list[float]] = {k: [] for k in kernels}
        for rep in range(reps + 1):  # the first call of each warms up
            for name, kernel in kernels.items():
                world.Barrier()
                t = time.perf_counter()
                kernel(buf, key=rep)
                seconds = world.allreduce(time.perf_counter() - t, op=MPI.MAX)
                if rep:
                    times[name].append(seconds)
        if world.rank == 0:
            print(json.dumps({"bytes": n, **{k: float(np.median(v)) for k, v in times.items()}}), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=8)
    parser.add_argument("--per-node", type=int, nargs="+", default=[4, 2])
    parser.add_argument("--links", nargs="+", default=["10,10", "50,1"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 4096, 65536, 4 << 20, 64 << 20])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(int(args.worker[0]), args.worker[1], args.sizes, args.reps)
        return 0
    over = "  (oversubscribed)" if args.ranks > (os.cpu_count() or 1) else ""
    print(f"{'layout':>7} {'link':>8} {'bytes':>10} {'flat (ms)':>10} {'hier (ms)':>10} {'hier/flat':>9} "
          f"{'model flat':>10} {'model hier':>10}  (model: inter-node ms){over}")  # fmt: skip
    for per_node in args.per_node:
        for link in args.links:
            latency_us, gbps = (float(x) for x in link.split(","))
            cmd = [find_mpiexec(), "-n", str(args.ranks), sys.executable, "-m", "bench.perf.topology", "--worker",
                   str(per_node), link, "--reps", str(args.reps), "--sizes", *map(str, args.sizes)]  # fmt: skip
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            N = args.ranks // per_node
            for line in out.splitlines():
                print(_row(json.loads(line), N, per_node, link, latency_us * 1e-6, gbps * 1e9 / 8), flush=True)
    return 0


def _row(r: dict, N: int, K: int, link: str, latency: float, bandwidth: float) -> str:
    n, flat, hier = r["bytes"], r["flat"], r["hierarchical"]
    model = [1e3 * model_seconds(k, n, N, K, latency, bandwidth) for k in ("flat", "hierarchical")]
    return (f"{N}x{K:<5} {link:>8} {n:>10} {1e3 * flat:>10.3f} {1e3 * hier:>10.3f} {hier / flat:>9.2f} "
            f"{model[0]:>10.3f} {model[1]:>10.3f}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

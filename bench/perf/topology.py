"""Flat against hierarchical all-reduce (and ``--allreduce auto``) over an emulated inter-node link, beside the
two-level model's prediction (issue 31's benchmark).

    python -m bench.perf.topology [--ranks 8] [--per-node 4 2] [--links 10,10 50,1] [--sizes 8 4096 4194304]

For each layout (R ranks as R/K virtual nodes of K) and link (``LATENCY_US,GBPS``, :mod:`bench.comm.emulated_link`):
one ``mpiexec`` job that first measures the two links as ``--allreduce auto`` does at set-up
(:mod:`bench.comm.calibrate`), then times the flat kernel (:class:`kernels.ring_allreduce.RingAllreduce`, which
takes recursive doubling below 128 KiB), the hierarchical one (:class:`kernels.hierarchical.HierarchicalAllreduce`)
and auto's choice (:class:`kernels.chosen.ModelChosenAllreduce`) on each size, interleaved, the median over
``--reps`` calls of the slowest rank's time. Goals: hierarchical <= 0.7x flat at 4 MiB and above on the 1 Gb/s link
with 4 ranks per node, <= 0.3x for 8 B-4 KiB; the model within 15 % of every measurement not oversubscribed.

Model columns: the two-level model (:mod:`kernels.cost`) with the links measured in the same job, intra-node time
included ("model"); and the inter-node time alone from the link's nominal latency L and bandwidth B ("net only":
the same formulas with a free link inside nodes). On this 2-core machine 8 ranks are oversubscribed: the table says
so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from bench.sweep import find_mpiexec
from kernels.cost import FREE, KERNELS, Link


def model_seconds(kernel: str, n: int, N: int, K: int, latency: float, bandwidth: float) -> float:
    """Inter-node seconds of one all-reduce of ``n`` bytes: :mod:`kernels.cost` with a free link inside nodes."""
    return KERNELS[kernel](n, N, K, FREE, Link(latency, 1.0 / bandwidth))


def worker(per_node: int, link: str, sizes: list[int], reps: int) -> None:
    """Inside the mpiexec job: both kernels on each size; rank 0 prints one JSON line per size."""
    from dataclasses import astuple

    from mpi4py import MPI

    from bench.comm.calibrate import measure_links
    from bench.comm.emulated_link import emulated
    from kernels.chosen import ModelChosenAllreduce
    from kernels.hierarchical import HierarchicalAllreduce
    from kernels.ring_allreduce import RingAllreduce
    from kernels.topology import Topology, virtual_nodes

    world = MPI.COMM_WORLD
    nodes = virtual_nodes(world.size, per_node)
    ring = Topology.ring(world.rank, world.size)
    topo = Topology(ring.rank, ring.size, ring.role, ring.ring_ranks, nodes=nodes)
    comm = emulated(world.Dup(), link, nodes)
    inside, across = measure_links(comm, topo.node_groups)  # what --allreduce auto measures at set-up
    auto = ModelChosenAllreduce(comm, topo, inside, across)
    kernels = {"flat": RingAllreduce(comm, topo), "hierarchical": HierarchicalAllreduce(comm, topo), "auto": auto}
    if world.rank == 0:
        print(json.dumps({"inside": astuple(inside), "across": astuple(across)}), flush=True)
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
            medians = {k: float(np.median(v)) for k, v in times.items()}
            print(json.dumps({"bytes": n, "took": auto.choices[buf.nbytes], **medians}), flush=True)


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
          f"{'auto (ms)':>10} {'auto took':>12} {'model flat':>10} {'model hier':>10} {'net only f':>10} "
          f"{'net only h':>10}{over}")  # fmt: skip
    for per_node in args.per_node:
        for link in args.links:
            latency_us, gbps = (float(x) for x in link.split(","))
            cmd = [find_mpiexec(), "-n", str(args.ranks), sys.executable, "-m", "bench.perf.topology", "--worker",
                   str(per_node), link, "--reps", str(args.reps), "--sizes", *map(str, args.sizes)]  # fmt: skip
            lines = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()
            links = json.loads(lines[0])
            inside, across = Link(*links["inside"]), Link(*links["across"])
            print(f"# {per_node} per node, link {link}: measured inside {_link(inside)}, across {_link(across)}")
            N = args.ranks // per_node
            for line in lines[1:]:
                row = _row(json.loads(line), N, per_node, (inside, across), link, latency_us * 1e-6, gbps * 1e9 / 8)
                print(row, flush=True)
    print(
        "# model: the two-level model (kernels/cost.py) with the links measured in the same job (what "
        "--allreduce auto decides with); net only: the emulated link's nominal latency and bandwidth, inter-node "
        "time alone"
    )
    return 0


def _link(link: Link) -> str:
    shared = "" if link.shared_beta is None else f" ({link.shared_beta * 1e9:.3f} shared)"
    return f"{link.alpha * 1e6:.1f} us + {link.beta * 1e9:.3f} ns/B{shared}"


def _row(r: dict, N: int, K: int, links: tuple[Link, Link], link: str, latency: float, bandwidth: float) -> str:
    n, flat, hier = r["bytes"], r["flat"], r["hierarchical"]
    model = [1e3 * KERNELS[k](n, N, K, *links) for k in ("flat", "hierarchical")]
    net = [1e3 * model_seconds(k, n, N, K, latency, bandwidth) for k in ("flat", "hierarchical")]
    return (f"{N}x{K:<5} {link:>8} {n:>10} {1e3 * flat:>10.3f} {1e3 * hier:>10.3f} {hier / flat:>9.2f} "
            f"{1e3 * r['auto']:>10.3f} {r['took']:>12} {model[0]:>10.3f} {model[1]:>10.3f} {net[0]:>10.3f} "
            f"{net[1]:>10.3f}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

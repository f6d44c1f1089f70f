"""``python -m bench micro``: OSU-style microbenchmarks through mpi4py's buffer API.

- ``latency``: ping-pong between ranks 0 and 1; one-way latency = round trip / 2 (OSU ``osu_latency``).
- ``allreduce``: our ring kernel (``ours``), the naive reference (``naive``) and the MPI library's
  ``Allreduce`` (``mpi``) side by side on the same float32 buffers; every size is checked against MPI.

Per iteration and implementation (implementations interleaved, so all see the same noise): the buffer is reset,
then a barrier, then the operation timed with ``MPI.Wtime``; the iteration's time is the slowest rank's. Every
implementation reduces in place (MPI with ``MPI_IN_PLACE``), so none pays for a copy the others skip. Warm-up
iterations run in the same loop and are discarded; every timed sample is kept. Bandwidths use the nccl-tests
definitions (algbw = S / t; all-reduce busbw = algbw * 2 (n - 1) / n).
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from bench import results
from bench.errors import UsageError
from kernels.reference import ring_bus_bandwidth
from kernels.ring_allreduce import NaiveAllreduce, RingAllreduce
from kernels.tags import Tag, tag_for
from kernels.topology import Topology
from kernels.watchdog import WATCHDOG

IMPLS = ("ours", "naive", "mpi")


def sizes_between(lo: int, hi: int) -> list[int]:
    """Powers of two from ``lo`` to ``hi`` bytes (inclusive), at least one float32."""
    out, s = [], max(4, 1 << max(0, (lo - 1).bit_length()))
    while s <= hi:
        out.append(s)
        s *= 2
    return out


def iterations(size: int, iters: int) -> int:
    """Fewer iterations for large messages: about ``iters`` MiB moved per size, at least 5."""
    return max(5, min(iters, int(iters * (1 << 20) / max(size, 1))))


def _time(comm, ops: dict, warmup: int, n: int, reset=None) -> dict[str, np.ndarray]:
    """Time every op of ``ops`` (name -> callable) ``n`` times, interleaved (op A, op B, op A, ...) so that all
    see the same machine noise. ``reset(name)`` runs before the barrier, outside the timed region. Each
    sample is the slowest rank's time for that iteration."""
    samples = {name: np.empty(n) for name in ops}
    for i in range(warmup + n):
        for name, fn in ops.items():
            if reset is not None:
                reset(name)
            comm.Barrier()
            t = MPI.Wtime()
            fn()
            dt = MPI.Wtime() - t
            if i >= warmup:
                samples[name][i - warmup] = dt
    for name, arr in samples.items():
        worst = np.empty_like(arr)
        comm.Allreduce(arr, worst, op=MPI.MAX)
        samples[name] = worst
    return samples


def bench_allreduce(comm, sizes, impls, warmup, iters) -> dict:
    """All-reduce (sum) in place on a float32 buffer, for every implementation, checked against MPI's result."""
    topo = Topology.ring(comm.rank, comm.size)
    kernels = {"ours": RingAllreduce(comm, topo), "naive": NaiveAllreduce(comm, topo)}
    out = {impl: [] for impl in impls}
    for size in sizes:
        n = size // 4
        base = ((np.arange(n) % 7) + comm.rank + 1).astype(np.float32)  # integer-valued: sums are exact
        expect = np.empty_like(base)
        comm.Allreduce(base, expect, op=MPI.SUM)
        bufs = {impl: base.copy() for impl in impls}
        ops = {}
        for impl in impls:
            if impl == "mpi":
                ops[impl] = lambda b=bufs[impl]: comm.Allreduce(MPI.IN_PLACE, b, op=MPI.SUM)
            else:
                ops[impl] = lambda b=bufs[impl], k=kernels[impl]: k(b)

        def reset(impl, bufs=bufs, base=base):
            bufs[impl][:] = base

        samples = _time(comm, ops, warmup, iterations(size, iters), reset=reset)
        for impl in impls:
            if not comm.allreduce(bool(np.array_equal(bufs[impl], expect)), op=MPI.LAND):
                raise RuntimeError(f"{impl} all-reduce of {size} bytes differs from the expected sum")
            out[impl].append(samples[impl])
    return out


def bench_latency(comm, sizes, warmup, iters) -> dict:
    if comm.size < 2:
        raise UsageError("micro --op latency needs at least 2 ranks")
    tag = tag_for(Tag.MICRO)
    res = []
    for size in sizes:
        buf = np.zeros(size, dtype=np.uint8)

        def op(buf=buf):
            if comm.rank == 0:
                comm.Send(buf, 1, tag)
                comm.Recv(buf, 1, tag)
            elif comm.rank == 1:
                comm.Recv(buf, 0, tag)
                comm.Send(buf, 0, tag)

        res.append(_time(comm, {"ours": op}, warmup, iterations(size, iters))["ours"] / 2)
    return {"ours": res}


def micro(args, comm: MPI.Comm) -> int:
    impls = tuple(i for i in args.impl.split(",") if i)
    bad = [i for i in impls if i not in IMPLS]
    if bad:
        raise UsageError(f"--impl: unknown {', '.join(bad)}; choose from {', '.join(IMPLS)}")
    if args.min > args.max:
        raise UsageError(f"--min {args.min} is larger than --max {args.max}")
    sizes = sizes_between(args.min, args.max)
    with WATCHDOG.guard(600, f"micro {args.op}"):
        if args.op == "allreduce":
            data = bench_allreduce(comm, sizes, impls, args.warmup, args.iters)
        else:
            data = bench_latency(comm, sizes, args.warmup, args.iters)
    if comm.rank == 0:
        report(args.op, sizes, data, comm.size)
        if args.out:
            write(args.out, args.op, sizes, data, comm.size)
    return 0


def report(op: str, sizes, data: dict, p: int) -> None:
    impls = list(data)
    print(f"# micro {op}, {p} ranks; median over samples (slowest rank per iteration)")
    head = f"{'bytes':>10} " + " ".join(f"{i + ' us':>12} {i + ' busGB/s':>14}" for i in impls)
    if "ours" in impls and "mpi" in impls:
        head += f" {'ours/mpi':>9}"
    print(head)
    for k, size in enumerate(sizes):
        row = f"{size:>10} "
        med = {}
        for impl in impls:
            med[impl] = float(np.median(data[impl][k]))
            _, bus = ring_bus_bandwidth(size, med[impl], p)
            row += f"{med[impl] * 1e6:>12.2f} {bus / 1e9:>14.3f} "
        if "ours" in med and "mpi" in med:
            row += f"{med['ours'] / med['mpi']:>9.2f}"
        print(row)


def write(path: str, op: str, sizes, data: dict, p: int) -> None:
    datasets = {}
    for impl, samples in data.items():
        width = max(len(s) for s in samples)
        table = np.full((len(sizes), width), np.nan)
        for k, s in enumerate(samples):
            table[k, : len(s)] = s
        datasets[f"micro/{op}/{impl}/size_bytes"] = (np.array(sizes, dtype=np.int64), "bytes")
        datasets[f"micro/{op}/{impl}/time_s"] = (table, "s")
    results.check_writable(path)
    results.write(path, {"kind": "micro", "op": op, "world_size": p}, datasets)

"""``python -m bench micro``: OSU-style microbenchmarks through mpi4py's buffer API (operations:
:mod:`bench.micro.operations`; every size of every implementation is checked against a reference).

Per iteration and implementation (implementations interleaved, so all see the same noise): the buffer is reset,
then a barrier, then the operation timed with ``MPI.Wtime``; the iteration's time is the slowest rank's. Every
implementation reduces in place (MPI with ``MPI_IN_PLACE``), so none pays for a copy the others skip. Warm-up
iterations run in the same loop and are discarded; every timed sample is kept. Bandwidths use the nccl-tests
definitions (algbw = S / t; all-reduce busbw = algbw * 2 (n - 1) / n).
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from bench.compress import parse as parse_compress
from bench.measure import provenance, results
from bench.micro.blocks import BLOCK_OPS, bench_blocks, block_sizes, bus_factor
from bench.micro.checks import WrongCounts
from bench.micro.compressed import COMPRESSED_IMPLS, bench_compressed_allreduce
from bench.micro.links import bench_links, layout
from bench.micro.operations import (
    OP_IMPLS,
    bench_allreduce,
    bench_bw,
    bench_fedavg_round,
    bench_latency,
    bench_ps_pushpull,
)
from bench.micro.sizes import parse_range, sizes_between
from bench.runtime.errors import UsageError
from bench.runtime.watchdog import WATCHDOG

DEFAULT_IMPLS = {"allreduce": "ours,naive,mpi"}
OP_ALIASES = {"ring": ("allreduce", "ours,mpi"), "naive": ("allreduce", "naive,mpi")}
"""``--op ring`` / ``--op naive``: the all-reduce benchmark with that kernel beside MPI's (``--impl`` still wins)."""


def iterations(size: int, iters: int, least: int = 5) -> int:
    """Fewer iterations for large messages: about ``iters`` MiB moved per size, at least ``least``."""
    return max(least, min(iters, int(iters * (1 << 20) / max(size, 1))))


def time_ops(comm, ops: dict, warmup: int, n: int, reset=None) -> dict[str, np.ndarray]:
    """Time every op of ``ops`` (name -> callable) ``n`` times, interleaved so that all see the same machine
    noise, in an order rotated every iteration (A B C, B C A, C A B, ...) so that whatever an op leaves behind
    for the next (cache contents, a library's helper threads) falls on every op alike. (Measured with one
    shared buffer, position alone made no difference: the same 16 MiB ``Allreduce`` took the same time first,
    second and third; what had biased the comparison was one buffer per op, see ``operations.allreduce_ops``.)
    The rotation is the same on every rank, as the ops are collective. ``reset(name)`` runs before the barrier,
    outside the timed region. Each sample is the slowest rank's time for that iteration."""
    samples = {name: np.empty(n) for name in ops}
    names = list(ops)
    for i in range(warmup + n):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            fn = ops[name]
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


def time_back_to_back(comm, fn, warmup: int, n: int) -> np.ndarray:
    """OSU's method (``osu_latency``; mpi4py's ``bench pingpong`` likewise): one barrier, ``warmup`` untimed calls,
    then ``n`` calls back to back with no barrier between them, each timed on rank 0, which starts every round trip
    and sees it end. Rank 0's samples go to every rank. (``time_ops`` brackets each call with a barrier and takes
    the slowest rank's time, which adds the barrier's skew between ranks to a one-message latency.)"""
    comm.Barrier()
    for _ in range(warmup):
        fn()
    samples = np.empty(n)
    for i in range(n):
        t = MPI.Wtime()
        fn()
        samples[i] = MPI.Wtime() - t
    comm.Bcast(samples, root=0)
    return samples


def choose_impls(op: str, text: str, pickle: bool, compressed: bool = False) -> tuple[str, ...]:
    known = COMPRESSED_IMPLS if compressed else OP_IMPLS[op]
    default = ",".join(COMPRESSED_IMPLS) if compressed else DEFAULT_IMPLS.get(op, ",".join(known))
    impls = [i for i in (text or default).split(",") if i]
    if pickle and "pickle" not in impls:
        impls.append("pickle")
    bad = [i for i in impls if i not in known]
    if bad:
        what = f"--op {op}" + (" --compress" if compressed else "")
        raise UsageError(f"--impl for {what}: unknown {', '.join(bad)}; choose from {', '.join(known)}")
    return tuple(impls)


def micro(args, comm: MPI.Comm) -> int:
    op, alias_impls = OP_ALIASES.get(args.op, (args.op, ""))
    compressor = _compressor(args.compress, op)
    impls = choose_impls(op, args.impl or alias_impls, args.pickle, compressed=compressor is not None)
    if args.message_sizes:
        try:
            args.min, args.max = parse_range(args.message_sizes, args.min, args.max)
        except ValueError as exc:
            raise UsageError(f"-m/--message-sizes: {exc}") from None
    if args.min > args.max:
        raise UsageError(f"--min {args.min} is larger than --max {args.max}")
    if args.step_factor < 2:
        raise UsageError(f"-f/--step-factor must be 2 or more, got {args.step_factor}")
    sizes = sizes_between(args.min, args.max, args.step_factor)
    if op in BLOCK_OPS:
        sizes = block_sizes(sizes, comm.size)

    def timer(ops, size, reset=None):
        if op in ("latency", "links") and args.latency_method == "osu":
            n = iterations(size, args.iters, args.min_iters)
            return {name: time_back_to_back(comm, fn, args.warmup, n) for name, fn in ops.items()}
        return time_ops(comm, ops, args.warmup, iterations(size, args.iters, args.min_iters), reset)

    wire, checks = None, WrongCounts(comm, strict=False)
    with WATCHDOG.guard(600, f"micro {op}"):
        if compressor is not None:
            data, wire = bench_compressed_allreduce(comm, sizes, impls, timer, compressor, checks)
        elif op == "allreduce":
            data = bench_allreduce(comm, sizes, impls, timer, checks)
        elif op in BLOCK_OPS:
            data = bench_blocks(comm, op, sizes, impls, timer, checks)
        elif op == "fedavg-round":
            data = bench_fedavg_round(comm, sizes, impls, timer, checks)
        elif op == "links":
            osu = args.latency_method == "osu"
            data = bench_links(comm, sizes, timer, checks, args.ranks_per_node, args.emulate_link, osu)
        else:
            run = {"latency": bench_latency, "bw": bench_bw, "ps-pushpull": bench_ps_pushpull}[op]
            data = run(comm, sizes, timer, checks)
    info = provenance.collect(comm) if args.out else {}  # collective; after timing: its imports disturb nothing
    if op == "links":
        info["nodes"] = list(layout(comm, args.ranks_per_node))  # collective too: the layout the links came from
    if comm.rank == 0:
        method = args.latency_method if op in ("latency", "links") else "barrier"
        report(op, sizes, data, comm.size, wire, args.compress, args.full, checks.counts, method)
        print(verdict(checks))
        if args.out:
            keys = ("op", "min", "max", "step_factor", "iters", "min_iters", "warmup", "pickle", "compress")
            keys += ("latency_method", "ranks_per_node", "emulate_link")
            info["config"] = {k: getattr(args, k) for k in keys} | {"impl": ",".join(impls)}
            write(args.out, op, sizes, data, comm.size, info, wire, checks.counts)
    return 1 if checks.total() else 0


def verdict(checks: WrongCounts) -> str:
    """nccl-tests' closing line: the wrong elements over every size and implementation."""
    total = checks.total()
    if not total:
        return "# wrong elements: 0 (every result equals its reference)"
    bad = ", ".join(f"{impl} ({sum(c)})" for impl, c in checks.counts.items() if sum(c))
    return f"# FAILED: {total} wrong elements from {bad}; their times above measure a wrong result"


def _compressor(spec: str, op: str):
    try:
        compressor = parse_compress(spec)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if compressor is not None and op != "allreduce":
        raise UsageError(f"micro --compress: only --op allreduce has a compressed form, not --op {op}")
    return compressor


def significant(x: float, digits: int = 3) -> str:
    """``x`` in fixed notation with at least ``digits`` significant digits (at most 9 decimals): a bandwidth of
    small messages reads 0.00213, not 0.000, and never in scientific notation."""
    if not np.isfinite(x) or x == 0:
        return f"{x:.3f}"
    decimals = min(9, max(3, digits - 1 - int(np.floor(np.log10(abs(x))))))
    return f"{x:.{decimals}f}"


def report(
    op: str, sizes, data: dict, p: int, wire=None, compress="none", full=False, wrong=None, method="barrier"
) -> None:
    """One row per size: median time, bandwidths and ``#wrong`` (nccl-tests: result elements that differ from
    the reference, over all ranks) per implementation (bandwidths of the dense float32 size),
    ours/reference ratios and, for a compressed all-reduce, the bytes our kernel sent from a rank beside the
    float32 ring's (``wire %``). ``full`` (OSU's ``-f``): the timed iterations, and each implementation's
    minimum, mean and maximum."""
    impls = list(data)
    what = f"{op} --compress {compress}" if wire is not None else op
    how = (
        "median of rank 0's round trips / 2, timed back to back after warm-up (OSU's method)"
        if method == "osu"
        else "median over samples (slowest rank per iteration, each after a barrier)"
    )
    print(f"# micro {what}, {p} ranks; {how}")
    # nccl-tests definitions: algbw = S / t; busbw = algbw x the collective's factor (bench.micro.blocks.bus_factor)
    bws = ("algGB/s", "busGB/s") if op == "allreduce" or op in BLOCK_OPS else ("GB/s",)
    ratios = [ref for ref in ("mpi", "gloo", "dense") if "ours" in impls and ref in impls]
    head = f"{'bytes':>10} " + (f"{'iters':>6} " if full else "")
    stats = ("min", "avg", "max") if full else ()
    wrong = wrong or {}
    head += " ".join(
        f"{i + ' us':>12}"
        + "".join(f" {i + ' ' + b:>14}" for b in bws)
        + "".join(f" {i + ' ' + s + ' us':>13}" for s in stats)
        + (f" {i + ' #wrong':>12}" if i in wrong else "")
        for i in impls
    )
    head += "".join(f" {'ours/' + ref:>10}" for ref in ratios)
    if wire and wire["sent"]:
        head += f" {'sent B':>10} {'dense B':>10} {'wire %':>7}"
    print(head)
    for k, size in enumerate(sizes):
        row = f"{size:>10} " + (f"{len(data[impls[0]][k]):>6} " if full else "")
        med = {}
        for impl in impls:
            samples = np.asarray(data[impl][k])
            med[impl] = float(np.median(samples))
            values = (size / med[impl], size / med[impl] * bus_factor(op, p))[: len(bws)]
            row += f"{med[impl] * 1e6:>12.2f}" + "".join(f" {significant(v / 1e9):>14}" for v in values)
            row += "".join(f" {1e6 * f(samples):>13.2f}" for f in (np.min, np.mean, np.max)[: len(stats)])
            row += (f" {wrong[impl][k]:>12}" if impl in wrong else "") + " "
        row += "".join(f" {med['ours'] / med[ref]:>10.2f}" for ref in ratios)
        if wire and wire["sent"]:
            sent, dense = wire["sent"][k], wire["dense"][k]
            row += f" {sent:>10} {dense:>10} {100 * sent / max(dense, 1):>7.2f}"
        print(row)


def write(path: str, op: str, sizes, data: dict, p: int, info=None, wire=None, wrong=None) -> None:
    """The samples, with the run's provenance and options (``info``) as root attributes, and each
    implementation's wrong elements per size (``wrong``); for a compressed all-reduce also
    ``micro/allreduce/ours/{sent,dense}_bytes`` per size (bytes a rank sent)."""
    datasets = {}
    for impl, samples in data.items():
        width = max(len(s) for s in samples)
        table = np.full((len(sizes), width), np.nan)
        for k, s in enumerate(samples):
            table[k, : len(s)] = s
        datasets[f"micro/{op}/{impl}/size_bytes"] = (np.array(sizes, dtype=np.int64), "bytes")
        datasets[f"micro/{op}/{impl}/time_s"] = (table, "s")
        if wrong and impl in wrong:
            datasets[f"micro/{op}/{impl}/wrong"] = (np.array(wrong[impl], dtype=np.int64), "elements")
    if wire and wire["sent"]:
        for key in ("sent", "dense"):
            datasets[f"micro/{op}/ours/{key}_bytes"] = (np.array(wire[key], dtype=np.int64), "bytes")
    results.check_writable(path)
    results.write(path, (info or {}) | {"kind": "micro", "op": op, "world_size": p}, datasets)

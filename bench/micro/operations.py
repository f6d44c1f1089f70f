"""The operations ``python -m bench micro`` times (harness, report and file: :mod:`bench.micro.harness`).

Each returns {implementation: [samples per size]} and checks its result on every size against a reference
(MPI's own collective, or a closed form), counting the wrong elements in ``checks``
(:class:`bench.micro.checks.WrongCounts`; without one, the first wrong result raises).

- ``allreduce``: sum in place of a float32 buffer. ``ours`` (ring, recursive doubling below 128 KiB), ``naive``
  (gather to root + broadcast), ``mpi`` (``Allreduce`` with MPI_IN_PLACE), ``gloo`` (torch.distributed
  ``all_reduce`` on the gloo backend), ``pickle`` (mpi4py's lowercase ``allreduce``: the object is pickled),
  ``hd`` (recursive halving/doubling, power-of-two ranks: where the ring's step count costs, see BENCHMARKS.md).
- ``latency``: ping-pong between ranks 0 and 1, one-way = round trip / 2 (OSU ``osu_latency``).
- ``links``: ping-pong inside a node and across nodes (:mod:`bench.micro.links`).
- ``bw``: a window of 64 non-blocking sends from rank 0 to 1, then a 1-byte acknowledgement; bandwidth = window
  x size / time (OSU ``osu_bw``).
- ``ps-pushpull``: one parameter-server round trip: every worker (ranks 1..p-1) pushes ``size`` bytes to the
  server (rank 0), which answers each with ``size`` bytes (non-blocking, as the PS server does).
- ``allgather``, ``reduce-scatter``, ``broadcast``: ring and binomial-tree kernels against MPI's
  (:mod:`bench.micro.blocks`).
- ``fedavg-round``: the aggregator (rank 0) sends ``size`` bytes to every other rank and folds each returned
  buffer into a weighted sum as it arrives (``ours``); ``mpi`` does the same with ``Bcast`` + ``Reduce``.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from bench.comm.calibrate import ping_pong
from bench.micro.checks import mismatches, strict_or
from bench.runtime.errors import UsageError
from kernels.halving_doubling import HalvingDoublingAllreduce
from kernels.ring_allreduce import NaiveAllreduce, RingAllreduce
from kernels.tags import Tag, tag_for
from kernels.topology import Topology
from kernels.waiting import probe

OP_IMPLS = {
    "allreduce": ("ours", "naive", "mpi", "gloo", "pickle", "hd"),
    "latency": ("ours",),
    "links": ("inside", "across"),
    "bw": ("ours",),
    "ps-pushpull": ("ours",),
    "fedavg-round": ("ours", "mpi"),
    "allgather": ("ours", "mpi"),
    "reduce-scatter": ("ours", "mpi"),
    "broadcast": ("ours", "mpi"),
}
WINDOW = 64


def allreduce_ops(comm, n: int, impls, buf: np.ndarray):
    """(ops, results) for one size: every op reduces ``buf`` in place (one buffer shared by all, reset before
    each op). Shared because the buffer itself biased the comparison: with one buffer per implementation, the
    same MPI ``Allreduce`` of 16 MiB took 4.0 ms on the first-allocated buffer and 2.8-3.2 ms on the other two
    (2 ranks, order rotated; transparent huge pages on), and the first buffer had always been ``ours``'s."""
    topo = Topology.ring(comm.rank, comm.size)
    kernels = {"ours": RingAllreduce(comm, topo), "naive": NaiveAllreduce(comm, topo)}
    if "hd" in impls:
        if comm.size & (comm.size - 1):
            raise UsageError(f"--impl hd (recursive halving/doubling) needs a power-of-two rank count, not {comm.size}")
        kernels["hd"] = HalvingDoublingAllreduce(comm, topo)
    results = {}
    ops = {}
    for impl in impls:
        if impl == "mpi":
            ops[impl] = lambda: comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        elif impl == "gloo":
            import torch

            from bench.runtime.gloo import init_gloo

            dist, t = init_gloo(comm), torch.from_numpy(buf)
            ops[impl] = lambda t=t, dist=dist: dist.all_reduce(t)
        elif impl == "pickle":
            ops[impl] = lambda impl=impl: results.__setitem__(impl, comm.allreduce(buf, op=MPI.SUM))
        else:
            ops[impl] = lambda k=kernels[impl]: k(buf)
    return ops, results


def bench_allreduce(comm, sizes, impls, timer, checks=None) -> dict:
    checks = strict_or(checks, comm)
    out = {impl: [] for impl in impls}
    for size in sizes:
        n = size // 4
        base = ((np.arange(n) % 7) + comm.rank + 1).astype(np.float32)  # integer-valued: sums are exact
        expect = np.empty_like(base)
        comm.Allreduce(base, expect, op=MPI.SUM)
        buf = base.copy()
        ops, results = allreduce_ops(comm, n, impls, buf)

        def reset(impl, buf=buf, base=base):
            buf[:] = base

        samples = timer(ops, size, reset)
        for impl in impls:  # after the timed calls (a kernel whose state goes wrong on reuse is caught), untimed
            reset(impl)
            ops[impl]()
            got = results.get(impl, buf)
            checks.record(impl, mismatches(got, expect), f"{impl} all-reduce of {size} bytes")
            out[impl].append(samples[impl])
    return out


def payload(size: int, k: int = 0) -> np.ndarray:
    """A payload no zeroed buffer equals (values 1..251), different for each message ``k`` of a window."""
    return ((np.arange(size) + k) % 251 + 1).astype(np.uint8)


def bench_latency(comm, sizes, timer, checks=None) -> dict:
    """Ping-pong: rank 0 sends a pattern, rank 1 returns what it received. Both receive into buffers zeroed
    before every iteration, and after the timed calls one more round trip is checked on both ends: a lost or
    truncated message leaves zeros where the pattern should be."""
    if comm.size < 2:
        raise UsageError("micro --op latency needs at least 2 ranks")
    tag, res, checks = tag_for(Tag.MICRO), [], strict_or(checks, comm)
    for size in sizes:
        send, recv = payload(size), np.zeros(size, dtype=np.uint8)
        op = ping_pong(comm, 0, 1, send, recv, tag)

        def reset(_name, recv=recv):
            recv[:] = 0

        res.append(timer({"ours": op}, size, reset)["ours"] / 2)
        reset("ours")
        op()
        checks.record("ours", mismatches(recv, send) if comm.rank <= 1 else 0, f"latency of {size} bytes")
    return {"ours": res}


def bench_bw(comm, sizes, timer, checks=None, drop: int | None = None) -> dict:
    """A window of non-blocking sends. The receiver's buffers are zeroed before every iteration and checked
    after one more untimed window. ``drop`` (testing aid) sends that message of the window empty, as if its
    payload were lost: the check must catch it."""
    if comm.size < 2:
        raise UsageError("micro --op bw needs at least 2 ranks")
    tag, ack = tag_for(Tag.MICRO, 1), np.zeros(1, dtype=np.uint8)
    checks = strict_or(checks, comm)
    res = []
    for size in sizes:
        sent = [payload(size, k) for k in range(WINDOW)]
        if drop is not None:
            sent[drop] = sent[drop][:0]
        recv = [np.zeros(size, dtype=np.uint8) for _ in range(WINDOW)]

        def op(sent=sent, recv=recv):
            if comm.rank == 0:
                MPI.Request.Waitall([comm.Isend(b, 1, tag) for b in sent])
                comm.Recv(ack, 1, tag)
            elif comm.rank == 1:
                MPI.Request.Waitall([comm.Irecv(b, 0, tag) for b in recv])
                comm.Send(ack, 0, tag)

        def reset(_name, recv=recv):
            for b in recv:
                b[:] = 0

        res.append(timer({"ours": op}, size * WINDOW, reset)["ours"] / WINDOW)  # seconds per message
        reset("ours")
        op()
        wrong = sum(mismatches(b, payload(size, k)) for k, b in enumerate(recv)) if comm.rank == 1 else 0
        checks.record("ours", wrong, f"bw of {size} bytes")
    return {"ours": res}


def bench_ps_pushpull(comm, sizes, timer, checks=None) -> dict:
    if comm.size < 2:
        raise UsageError("micro --op ps-pushpull needs a server and a worker (2 ranks)")
    push, pull = tag_for(Tag.PS_PUSH, 0), tag_for(Tag.PS_PULL, 0)
    res, checks = [], strict_or(checks, comm)
    for size in sizes:
        n = size // 4
        grads = [np.empty(n, dtype=np.float32) for _ in range(comm.size)]
        mine = np.full(n, comm.rank, dtype=np.float32)
        params = np.full(n, -1.0, dtype=np.float32)

        def op(grads=grads, mine=mine, params=params):
            if comm.rank == 0:
                MPI.Request.Waitall([comm.Irecv(grads[w], w, push) for w in range(1, comm.size)])
                MPI.Request.Waitall([comm.Isend(grads[w], w, pull) for w in range(1, comm.size)])
            else:
                comm.Send(mine, 0, push)
                comm.Recv(params, 0, pull)

        res.append(timer({"ours": op}, size)["ours"])
        wrong = mismatches(params, np.full_like(params, comm.rank)) if comm.rank else 0
        checks.record("ours", wrong, f"ps-pushpull of {size} bytes")
    return {"ours": res}


def bench_fedavg_round(comm, sizes, impls, timer, checks=None) -> dict:
    if comm.size < 2:
        raise UsageError("micro --op fedavg-round needs an aggregator and a client rank (2 ranks)")
    down, up = tag_for(Tag.FED_MODEL, 0), tag_for(Tag.FED_UPDATE, 0)
    checks = strict_or(checks, comm)
    out = {impl: [] for impl in impls}
    weight = float(comm.rank)  # client r's n_k = r; the weighted sum of "model + r" is closed-form
    for size in sizes:
        n = size // 4
        model, scratch, total = (np.zeros(n, dtype=np.float32) for _ in range(3))
        local, scaled = np.zeros(n, dtype=np.float32), np.zeros(n, dtype=np.float32)
        results = {}

        bufs = dict(model=model, scratch=scratch, total=total, local=local, scaled=scaled)

        def ours(b=bufs, results=results):
            if comm.rank == 0:
                sends = [comm.Isend(b["model"], r, down) for r in range(1, comm.size)]
                b["total"][:] = 0
                status = MPI.Status()
                for _ in range(1, comm.size):
                    probe(comm, MPI.ANY_SOURCE, up, status)
                    src = status.Get_source()
                    comm.Recv(b["scratch"], src, up)
                    b["total"][:] += float(src) * b["scratch"]
                MPI.Request.Waitall(sends)
                results["ours"] = b["total"].copy()
            else:
                comm.Recv(b["local"], 0, down)
                b["local"][:] += comm.rank
                comm.Send(b["local"], 0, up)

        def mpi(b=bufs, results=results):
            comm.Bcast(b["model"] if comm.rank == 0 else b["local"], root=0)
            b["scaled"][:] = 0 if comm.rank == 0 else weight * (b["local"] + comm.rank)
            comm.Reduce(b["scaled"], b["total"] if comm.rank == 0 else None, op=MPI.SUM, root=0)
            if comm.rank == 0:
                results["mpi"] = b["total"].copy()

        ops = {impl: {"ours": ours, "mpi": mpi}[impl] for impl in impls}
        samples = timer(ops, size)
        expect = sum(float(r) * r for r in range(1, comm.size))  # sum_r n_r (0 + r)
        for impl in impls:
            wrong = mismatches(results[impl], np.full(n, expect, np.float32), close=True) if comm.rank == 0 else 0
            checks.record(impl, wrong, f"{impl} fedavg-round of {size} bytes")
            out[impl].append(samples[impl])
    return out

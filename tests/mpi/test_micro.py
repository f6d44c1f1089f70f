"""The microbenchmarks' own correctness checks, at every rank count: each op's result is compared with MPI's
collective or a closed form on every size (they raise on a mismatch), and a broken kernel must be caught."""

import numpy as np
import pytest
from mpi4py import MPI

from bench.compress import parse as parse_compress
from bench.micro import compressed as micro_compressed
from bench.micro import operations as micro_ops
from bench.micro.harness import time_ops
from bench.micro.sizes import sizes_between

from .conftest import all_agree

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(240)]
SIZES = sizes_between(8, 1 << 16)


def timer(ops, size, reset=None):
    return time_ops(MPI.COMM_WORLD, ops, 1, 3, reset)


@pytest.mark.parametrize("impls", [("ours", "naive", "mpi", "pickle"), ("ours", "gloo")], ids=["mpi", "gloo"])
def test_allreduce_implementations_agree_with_mpi(impls):
    out = micro_ops.bench_allreduce(MPI.COMM_WORLD, SIZES, impls, timer)
    assert all(len(out[i]) == len(SIZES) and (np.concatenate(out[i]) > 0).all() for i in impls)


@pytest.mark.parametrize("op", ["latency", "bw", "ps-pushpull", "fedavg-round"])
def test_point_to_point_ops_check_their_results(op):
    comm = MPI.COMM_WORLD
    if comm.size < 2:
        pytest.skip("needs 2 ranks")
    if op == "fedavg-round":
        out = micro_ops.bench_fedavg_round(comm, SIZES[2:], ("ours", "mpi"), timer)
    else:
        fn = {"latency": micro_ops.bench_latency, "bw": micro_ops.bench_bw, "ps-pushpull": micro_ops.bench_ps_pushpull}
        out = fn[op](comm, SIZES[2:], timer)
    assert all_agree(all((np.concatenate(v) > 0).all() for v in out.values()))


@pytest.mark.parametrize("method", ["fp16", "bf16", "topk:0.05", "randk:0.2", "qsgd:15", "sign"])
def test_compressed_allreduce_agrees_with_the_serial_reference(method):
    """ours (our rings) and mpi (MPI's Allgatherv) against the serial sum of decompressed payloads; dense against
    MPI's Allreduce; bytes sent: fp16/bf16 exactly half of the dense ring's on the ring path (>= 128 KiB)."""
    sizes = [8, 100, 4096, 1 << 17]
    impls = micro_compressed.COMPRESSED_IMPLS
    out, wire = micro_compressed.bench_compressed_allreduce(MPI.COMM_WORLD, sizes, impls, timer, parse_compress(method))
    assert all(len(out[i]) == len(sizes) for i in impls) and len(wire["sent"]) == len(sizes)
    if method in ("fp16", "bf16") and MPI.COMM_WORLD.size > 1:
        assert 2 * wire["sent"][-1] == wire["dense"][-1], wire


class CountingComm:
    """The world communicator, counting the bytes this rank hands to Send and Sendrecv."""

    def __init__(self, comm):
        self.comm, self.sent = comm, 0

    def __getattr__(self, name):
        return getattr(self.comm, name)

    def Send(self, buf, *args, **kw):
        self.sent += np.asarray(buf).nbytes
        return self.comm.Send(buf, *args, **kw)

    def Sendrecv(self, buf, *args, **kw):
        self.sent += np.asarray(buf).nbytes
        return self.comm.Sendrecv(buf, *args, **kw)


@pytest.mark.parametrize("method", ["fp16", "topk:0.05", "dense"])
def test_compressed_bytes_counted_are_the_bytes_sent(method):
    """The kernels' own accounting (``sent``, ``elements_sent``) against the bytes handed to MPI, on a size whose
    fp16 payload is below the ring's threshold: fp16 must still take the dense buffer's ring (exactly half)."""
    comm = CountingComm(MPI.COMM_WORLD)
    kernel = micro_compressed.CompressedSum(comm, parse_compress("topk:0.05" if method == "dense" else method))
    buf = np.arange(1 << 15, dtype=np.float32) % 11
    if method == "dense":
        kernel.dense(buf)
        expected = kernel.ring.elements_sent(buf.size, 4) * 4
    else:
        kernel.ours(buf)
        expected = kernel.sent
    assert all_agree(comm.sent == expected), (comm.sent, expected)
    if method == "fp16":
        assert all_agree(2 * comm.sent == kernel.ring.elements_sent(buf.size, 4) * 4)


def test_a_lost_compressed_payload_is_caught(monkeypatch):
    comm = MPI.COMM_WORLD
    if comm.size < 2:
        pytest.skip("one rank gathers only its own payload")
    real = micro_compressed.RingAllgatherv.__call__

    def drops_the_last(self, payload, key=0):
        blocks, sent = real(self, payload, key)
        return blocks[:-1] + [np.zeros(0, np.uint8)], sent

    monkeypatch.setattr(micro_compressed.RingAllgatherv, "__call__", drops_the_last)
    with pytest.raises(RuntimeError, match="differs from the reference"):
        micro_compressed.bench_compressed_allreduce(comm, [4096], ("ours",), timer, parse_compress("topk:0.1"))


def test_halving_doubling_agrees_with_mpi_on_power_of_two_ranks():
    comm = MPI.COMM_WORLD
    if comm.size & (comm.size - 1):
        with pytest.raises(micro_ops.UsageError, match="power-of-two"):
            micro_ops.bench_allreduce(comm, [64], ("hd",), timer)
        return
    sizes = [4, 12, 64, 1000, 1 << 16, (1 << 16) + 12]  # odd splits too
    out = micro_ops.bench_allreduce(comm, sizes, ("hd", "mpi"), timer)
    assert len(out["hd"]) == len(sizes)


def test_a_wrong_kernel_is_caught(monkeypatch):
    comm = MPI.COMM_WORLD
    if comm.size < 2:
        pytest.skip("a one-rank sum cannot be wrong this way")
    real = micro_ops.RingAllreduce.__call__

    def off_by_one(self, buf, key=0):
        real(self, buf, key)
        buf[:1] += 1  # a kernel that gets one element wrong

    monkeypatch.setattr(micro_ops.RingAllreduce, "__call__", off_by_one)
    with pytest.raises(RuntimeError, match="differs from the reference"):
        micro_ops.bench_allreduce(comm, [64], ("ours", "mpi"), timer)


def test_interleaved_order_rotates_so_each_op_takes_every_position():
    """Over len(ops) iterations each op must run once in each position (see ``time_ops``), in the same order on
    every rank (the ops are collective)."""
    calls = []
    ops = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    time_ops(MPI.COMM_WORLD, ops, warmup=0, n=3)
    rounds = [calls[k : k + 3] for k in range(0, 9, 3)]
    every_position = all(sorted(r[position] for r in rounds) == ["a", "b", "c"] for position in range(3))
    same_on_every_rank = MPI.COMM_WORLD.bcast(calls, root=0) == calls
    assert all_agree(every_position and same_on_every_rank), rounds


def test_a_lost_bw_message_is_caught():
    """The receiver's buffers are zeroed before the checked window: a message whose payload never arrives
    (sent empty here) must fail the check, not pass on data left from an earlier iteration."""
    comm = MPI.COMM_WORLD
    if comm.size < 2:
        pytest.skip("needs 2 ranks")
    with pytest.raises(RuntimeError, match="differs from the reference"):
        micro_ops.bench_bw(comm, [64], timer, drop=5)


@pytest.mark.parametrize("op", ["allgather", "reduce-scatter", "broadcast"])
def test_block_collectives_agree_with_mpi(op):
    """Ring all-gather, ring reduce-scatter and the binomial broadcast against MPI's Allgather,
    Reduce_scatter_block and Bcast, on whole buffers of p blocks from one float32 per block up."""
    from bench.micro.blocks import bench_blocks, block_sizes

    comm = MPI.COMM_WORLD
    sizes = block_sizes([4, 100, 4096, 1 << 16, (1 << 16) + 12], comm.size)
    out = bench_blocks(comm, op, sizes, ("ours", "mpi"), timer)
    assert len(out["ours"]) == len(sizes) and all((s > 0).all() for s in out["ours"])


@pytest.mark.parametrize("kernel", ["RingAllgather", "RingReduceScatter", "BinomialBroadcast"])
def test_a_block_collective_that_skips_a_step_is_caught(monkeypatch, kernel):
    from bench.micro import blocks

    comm = MPI.COMM_WORLD
    if comm.size < 2:
        pytest.skip("one rank has nothing to exchange")
    op = {"RingAllgather": "allgather", "RingReduceScatter": "reduce-scatter", "BinomialBroadcast": "broadcast"}[kernel]
    cls = getattr(blocks, kernel)
    real = cls.__call__

    def wrong(self, buf):
        got = real(self, buf)
        if self.topology.ring_index == self.topology.ring_size - 1:
            got[:1] += 1  # the last position's result is off in one element
        return got

    monkeypatch.setattr(cls, "__call__", wrong)
    with pytest.raises(RuntimeError, match="differs from the reference"):
        blocks.bench_blocks(comm, op, [64 * comm.size], ("ours",), timer)


def test_wrong_elements_are_counted_per_size_and_implementation(monkeypatch):
    """nccl-tests' #wrong: a kernel off by one element on every rank counts p wrong elements on its size, and
    none on the reference's; a counting tally records instead of raising."""
    from bench.micro.checks import WrongCounts

    comm = MPI.COMM_WORLD
    real = micro_ops.RingAllreduce.__call__

    def off_by_one(self, buf, key=0):
        real(self, buf, key)
        buf[:1] += 1

    monkeypatch.setattr(micro_ops.RingAllreduce, "__call__", off_by_one)
    checks = WrongCounts(comm, strict=False)
    micro_ops.bench_allreduce(comm, [64, 256], ("ours", "mpi"), timer, checks)
    assert checks.counts == {"ours": [comm.size, comm.size], "mpi": [0, 0]}, checks.counts


def test_micro_prints_wrong_counts_keeps_them_and_exits_1(monkeypatch, tmp_path, capsys):
    """The command on a wrong kernel: the table's #wrong column, the FAILED line, the counts in the file, exit 1
    (a correct run: zeros and exit 0)."""
    import h5py

    from bench.cli import make_parser
    from bench.micro.harness import micro

    comm = MPI.COMM_WORLD
    path = comm.bcast(str(tmp_path / "m.h5"), root=0)
    args = make_parser().parse_args(["micro", "-m", "64:128", "--iters", "2", "--warmup", "0", "--out", path])
    assert micro(args, comm) == 0
    real = micro_ops.RingAllreduce.__call__

    def off_by_one(self, buf, key=0):
        real(self, buf, key)
        buf[:1] += 1

    monkeypatch.setattr(micro_ops.RingAllreduce, "__call__", off_by_one)
    code = micro(args, comm)
    out, ok = capsys.readouterr().out, True
    if comm.rank == 0:  # checked on rank 0, agreed on every rank (an assertion on one rank alone would hang the rest)
        ok = "ours #wrong" in out and f"# FAILED: {2 * comm.size} wrong elements from ours" in out
        with h5py.File(path) as f:
            ok = ok and list(f["micro/allreduce/ours/wrong"][:]) == [comm.size] * 2
            ok = ok and list(f["micro/allreduce/mpi/wrong"][:]) == [0, 0]
    assert all_agree(ok and code == 1), out


@pytest.mark.mpi
def test_back_to_back_latency_is_rank_0s_loop_shared_with_every_rank():
    """OSU's method: n timed round trips on rank 0 after warm-up, its samples broadcast, the message checked."""
    from bench.micro.harness import time_back_to_back

    comm = MPI.COMM_WORLD
    if comm.size < 2:
        pytest.skip("needs 2 ranks")
    calls = []

    def loop(ops, size, reset=None):
        calls.append(size)
        return {name: time_back_to_back(comm, fn, 2, 7) for name, fn in ops.items()}

    out = micro_ops.bench_latency(comm, [8, 64], loop)
    samples = np.concatenate(out["ours"])
    everyone = comm.allgather(samples.tobytes())
    assert all_agree(calls == [8, 64] and samples.size == 14 and (samples > 0).all() and len(set(everyone)) == 1)


def test_links_time_both_links_and_the_emulated_one_is_slower(monkeypatch):
    """``--op links`` on 2 virtual nodes (3-4 ranks: a node of 2 and another node): both links timed and their
    payloads checked; across an emulated 200 us link a round trip's one-way time is never under that latency (a
    lower bound: no timing flake on a busy host). Fewer ranks have no two links: one message."""
    from bench.micro.links import bench_links
    from bench.runtime.errors import UsageError

    comm = MPI.COMM_WORLD
    with pytest.raises(UsageError, match="must be >= 0"):
        bench_links(comm, [8], timer, ranks_per_node=-1)
    with pytest.raises(UsageError, match="expected LATENCY_US,GBPS"):
        bench_links(comm, [8], timer, ranks_per_node=2, emulate="fast")
    if comm.size < 3:
        with pytest.raises(UsageError, match="needs two nodes and a node of two ranks"):
            bench_links(comm, [8], timer, ranks_per_node=2)
        return
    if comm.size == 3:  # real nodes (0, 1, 1): the inside pair is (1, 2), which rank 0's clock cannot time
        monkeypatch.setattr("bench.micro.links.node_ids", lambda _comm: (0, 1, 1))
        with pytest.raises(UsageError, match="rank 0 is not in both"):
            bench_links(comm, [8], timer, rank_0_times=True)
    out = bench_links(comm, [8, 4096], timer, ranks_per_node=2, emulate="200,10")
    inside, across = (np.median(np.array(out[k]), axis=1) for k in ("inside", "across"))
    assert all_agree(set(out) == {"inside", "across"} and (across >= 200e-6).all() and (inside > 0).all())

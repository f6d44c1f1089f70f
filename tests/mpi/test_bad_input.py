"""Bad input to ``bench train``: exit code 2 on every rank, the message once (from rank 0), no traceback on any
rank. Each case runs the command's own path in this job (tests/mpi/commands.py); tests/smoke/test_commands.py
keeps two cases as real launches (the processes' exit code, one message for the whole job)."""

import pytest
from mpi4py import MPI

from .commands import train_in_job

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(120)]

TINY = ["--steps", "4", "--batch-size", "8", "--eval-every", "2"]
CASES = [  # (ranks, options, message): the messages that name a rank count need that many ranks
    (3, ["--strategy", "nope"], "unknown strategy 'nope'"),
    (3, ["--steps", "0"], "--steps must be positive"),
    (3, ["--batch-size", "5000"], "larger than the smallest partition"),
    (3, ["--dataset", "mnist", "--data-dir", "."], "missing train-images-idx3-ubyte"),
    (3, ["--out", "/proc/forbidden/r.h5"], "cannot write there"),
    (3, ["--strategy", "ps", "--servers", "3"], "leaves no worker on 3 ranks"),
    (3, ["--strategy", "ssp", "--servers", "5"], "leaves no worker on 3 ranks"),
    (3, ["--strategy", "ssp", "--staleness", "-1"], "--staleness must be >= 0"),
    (3, ["--strategy", "ps", "--straggler", "3:2"], "rank 3 is out of range for 3 ranks"),
    (2, [*TINY, "--straggler", "7:2"], "out of range for 2 ranks"),
    (3, ["--strategy", "fedavg", "--clients", "1"], "--clients 1 is fewer than the 2 client ranks"),
    (3, ["--strategy", "fedavg", "--fraction", "0"], "--fraction must be in (0, 1]"),
    (3, ["--strategy", "fedavg", "--fraction", "1.5"], "--fraction must be in (0, 1]"),
    (3, ["--strategy", "fedavg", "--deadline", "0"], "--deadline must be positive"),
    (3, ["--strategy", "fedavg", "--clients", "5000", "--partition", "iid"], "left a partition empty"),
    (2, ["--model", "cnn", *TINY, "--compress", "topk:5"], "expected one of none, fp16"),
    (2, ["--device", "cuda", *TINY], "no CUDA device"),
    (2, [*TINY, "--gpu-path", "device", "--compress", "fp16"], "--gpu-path device: --compress compresses host"),
    (2, [*TINY, "--gpu-path", "device", "--allreduce", "hierarchical"], "--gpu-path device: --allreduce hier"),
    (2, [*TINY, "--buckets-in-flight", "0"], "--buckets-in-flight must be positive"),
]
KRUM = ["--strategy", "fedavg", "--clients", "12", "--fraction", "0.75", "--rounds", "3", "--aggregator", "krum:4"]
CASES.append((3, KRUM, "needs at least 11 clients per round"))


@pytest.mark.parametrize("ranks,args,message", CASES)
def test_bad_input_is_one_message_from_rank_0_and_exit_2(ranks, args, message, shared_tmp):
    comm = MPI.COMM_WORLD
    if comm.size != ranks:
        pytest.skip(f"the case is for {ranks} ranks")
    if "--device" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("checks the message given where CUDA is missing")
    out = [] if "--out" in args else ["--out", f"{shared_tmp}/x.h5"]
    codes, said = train_in_job("--quiet", *args, *out).everyone()
    ok = codes == [2] * comm.size and said[0].count(message) == 1 and not any(s.strip() for s in said[1:])
    ok = ok and not any("Traceback" in s for s in said)
    assert comm.allreduce(ok, op=MPI.LAND), (codes, said)

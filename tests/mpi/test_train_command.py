"""``bench train`` end to end on every model, the file readers, localsgd, compression and a robust FedAvg run, each
run in this job (tests/mpi/commands.py) and checked in its summary and its results file. These were launches of
their own in tests/smoke (about 3 s of CPU per rank each); the launch itself stays tested there."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from .commands import train_in_job

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(180)]

TINY = ["--steps", "4", "--batch-size", "8", "--quiet", "--eval-every", "2"]


def ran_on(ranks: int, *argv: str):
    """Skip unless the job has ``ranks`` ranks; run ``bench train ARGV``; every rank must exit 0."""
    comm = MPI.COMM_WORLD
    if comm.size != ranks:
        pytest.skip(f"a {ranks}-rank run")
    ran = train_in_job(*argv)
    codes, errs = ran.everyone()
    assert codes == [0] * ranks, errs
    return ran


def on_rank_0(check) -> None:
    """Collective: run ``check()`` on rank 0 (assertions on its file or summary, or writing inputs) and fail on
    every rank if it failed."""
    comm = MPI.COMM_WORLD
    failure = None
    if comm.rank == 0:
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - reported on every rank, so no rank waits for ever
            failure = f"{type(exc).__name__}: {exc}"
    failure = comm.bcast(failure, root=0)
    assert failure is None, failure


@pytest.mark.parametrize(
    "model,dataset",
    [("mlp", "synthetic"), ("cnn", "digits"), ("resnet20", "digits"), ("transformer", "leaf-synthetic")],
)
def test_train_each_model(shared_tmp, model, dataset):
    out = f"{shared_tmp}/r.h5"
    extra = ["--synthetic-shape", "1x8x8", "--synthetic-samples", "400"] if dataset == "synthetic" else []
    if dataset == "leaf-synthetic":
        extra = ["--partition", "natural", "--leaf-devices", "4"]
    ran = ran_on(2, "--model", model, "--dataset", dataset, *TINY, *extra, "--out", out)

    def check():
        assert "throughput" in ran.out and "comm:compute" in ran.out and "comm share" in ran.out, ran.out
        with h5py.File(out) as f:
            assert f.attrs["completed_steps"] == 4 and f["timing/forward"].shape[:2] == (2, 4)
        # one definition: the run's summary prints the samples/s the analysis computes from the file
        from analysis.data.load import load
        from analysis.stats.metrics import step_stats

        printed = next(line for line in ran.out.splitlines() if "throughput" in line).split()[1]
        assert printed == f"{step_stats(load(out), 1).samples_per_s:.1f}", ran.out

    on_rank_0(check)


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_train_from_data_dir(shared_tmp, dataset):
    """The file readers end to end: small MNIST idx / CIFAR-10 binary files written here, then a real run."""
    from tests.unit.test_data import write_cifar, write_idx

    folder = Path(shared_tmp)

    def write():
        rng = np.random.default_rng(0)
        if dataset == "mnist":
            for prefix, n in (("train", 64), ("t10k", 16)):
                write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), compress=True)
                write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n), compress=True)
        else:
            write_cifar(folder / "data_batch_1.bin", rng.integers(0, 10, 64), rng)
            write_cifar(folder / "test_batch.bin", rng.integers(0, 10, 16), rng)

    on_rank_0(write)  # collective: every rank fails if the writing did
    out = f"{shared_tmp}/r.h5"
    ran_on(2, "--dataset", dataset, "--data-dir", shared_tmp, "--model", "mlp", *TINY, "--out", out)

    def check():
        with h5py.File(out) as f:
            assert list(f["data/partition_sizes"][()]) == [32, 32]

    on_rank_0(check)


def test_train_localsgd(shared_tmp):
    out = f"{shared_tmp}/l.h5"
    args = ["--strategy", "localsgd", "--local-steps", "2", "--warmup-steps", "1", "--outer-momentum", "0.3"]
    ran_on(3, "--model", "mlp", *TINY, *args, "--out", out)

    def check():
        with h5py.File(out) as f:
            assert list(f["localsgd/synced"][0]) == [1, 0, 1, 1] and f["localsgd/synced"].attrs["units"] == "1"
            comm = f["timing/comm_bytes"][()].sum(axis=2)
            assert (comm[:, [0, 2, 3]] > 0).all() and (comm[:, 1] == 0).all()  # bytes only on averaging steps

    on_rank_0(check)


RUN = ["--strategy", "ring", "--model", "cnn", "--steps", "6", "--batch-size", "16", "--eval-every", "0", "--quiet"]


def test_compressed_ring_records_bytes_sent_against_dense(shared_tmp):
    """The summary names the compression phase; the file records the bytes actually sent beside the dense ring's."""
    out = f"{shared_tmp}/topk.h5"
    ran = ran_on(2, *RUN, "--compress", "topk:0.01", "--out", out)

    def check():
        assert "compression" in ran.out, ran.out
        with h5py.File(out) as f:
            sent, dense = f["compress/sent_bytes"][()].sum(), f["compress/dense_bytes"][()].sum()
            assert sent == f["timing/comm_bytes"][()].sum()
            info = json.loads(f.attrs["strategy_info"])
            assert info["compress"] == "topk:0.01" and info["error_feedback"] is True
            assert (info["compress_on"], info["buckets_in_flight"]) == ("host", 1)  # CPU; one bucket at a time
            assert 0 < sent <= 0.025 * dense  # 8 bytes per kept entry, 1 % kept, at 2 ranks
            assert (f["timing/compress"][()] > 0).any() and (f["compress/residual_norm"][()][:, 1:] > 0).all()

    on_rank_0(check)


@pytest.mark.parametrize("mode", ["async", "ssp"])
def test_compressed_pushes_run_on_the_event_driven_servers(shared_tmp, mode):
    """ps async and ssp with compressed pushes (servers decode each piece as it lands): complete, and the pushed
    bytes are what the method sends (sign: 1 bit per entry + a scale per piece)."""
    out = f"{shared_tmp}/{mode}.h5"
    ran_on(3, "--strategy", "ps", "--ps-mode", mode, *RUN[2:], "--compress", "sign", "--out", out)

    def check():
        with h5py.File(out) as f:
            sent, dense = f["compress/sent_bytes"][()].sum(), f["compress/dense_bytes"][()].sum()
            assert f.attrs["status"] == "complete" and 0 < sent < dense / 25, (sent, dense)

    on_rank_0(check)


def test_robust_run_records_its_attackers(shared_tmp):
    out = f"{shared_tmp}/krum.h5"
    args = ["--strategy", "fedavg", "--clients", "12", "--fraction", "0.75", "--rounds", "3", "--quiet"]
    ran_on(3, *args, "--aggregator", "krum:2", "--byzantine", "0.2:sign-flip", "--out", out)

    def check():
        with h5py.File(out) as f:
            assert f["fedavg/clients/byzantine"][()].sum() == 3 * 2  # round(0.2 x 9) per round
            assert f.attrs["status"] == "complete"

    on_rank_0(check)


def test_ps_overlap_writes_its_file_with_the_workers_exposed_time(shared_tmp):
    """ps --overlap to the end: its servers declare the exposed-time series their workers fill (the gather matches
    series by order; a series only workers declared aborted the run at its first flush). Recorded: the staging, and
    the buckets actually in flight (its pushes copy no layer ahead, whatever --buckets-in-flight asks)."""
    out = f"{shared_tmp}/ps_overlap.h5"
    ran_on(3, "--strategy", "ps", "--overlap", "--model", "mlp", *TINY, "--buckets-in-flight", "3", "--out", out)

    def check():
        with h5py.File(out) as f:
            exposed = f["timing/exposed"][()]  # (ranks, steps, layers): rank 0 is the server
            info = json.loads(f.attrs["strategy_info"])
            assert f.attrs["status"] == "complete" and not exposed[0].any() and exposed[1:].sum() > 0
            assert (info["staging"], info["buckets_in_flight"]) == ("host", 1), info  # --overlap: none copied ahead

    on_rank_0(check)


def test_fedavg_messages_cross_nodes_through_the_strategys_communicator(shared_tmp):
    """Each rank its own node: every byte the aggregator and the client hosts send crosses a node boundary, so
    the bytes counted across nodes are all of them (FedAvg once sent on the world communicator, which neither
    counted nor paced them: --emulate-link was accepted and did nothing), and they equal the hosts'
    ``timing/comm_bytes`` (the model received, which the aggregator sent, and every message sent: headers and
    records too, which were once left out, so that more bytes crossed nodes than were sent)."""
    out = f"{shared_tmp}/fedavg_nodes.h5"
    ran_on(3, "--strategy", "fedavg", "--rounds", "2", "--clients", "4", "--model", "mlp", "--quiet",
           "--ranks-per-node", "1", "--out", out)  # fmt: skip

    def check():
        with h5py.File(out) as f:
            across, sent = f["timing/comm_bytes_across"][()].sum(), f["timing/comm_bytes"][()].sum()
            assert json.loads(f.attrs["nodes"]) == [0, 1, 2] and across == sent > 0, (across, sent)

    on_rank_0(check)

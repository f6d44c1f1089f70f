"""Every ``python -m bench`` command at tiny sizes, launched as a user would, plus its error paths."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.helpers import ROOT, bench, mpiexec

TINY = ["--steps", "4", "--batch-size", "8", "--quiet", "--eval-every", "2"]


def test_info_and_help():
    proc = bench(2, "info")
    assert proc.returncode == 0, proc.stderr
    assert "MPI library" in proc.stdout and "ranks            2" in proc.stdout
    proc = bench(2, "train", "--help")
    assert proc.returncode == 0
    assert proc.stdout.count("usage:") == 1 and "--bucket-mb" in proc.stdout


def test_micro_and_overhead(tmp_path):
    out = tmp_path / "m.h5"
    proc = bench(3, "micro", "--max", "4096", "--iters", "5", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "ours/mpi" in proc.stdout
    with h5py.File(out) as f:
        assert f["micro/allreduce/ours/time_s"].shape[0] == 10  # 8 B .. 4096 B
        assert f.attrs["mpi_library"] and f.attrs["git_commit"] and f.attrs["world_size"] == 3
        assert json.loads(f.attrs["config"]) | {"iters": 5, "impl": "ours,naive,mpi"} == json.loads(f.attrs["config"])
    proc = bench(2, "micro", "--op", "latency", "--max", "64", "--iters", "5")
    assert proc.returncode == 0, proc.stderr
    proc = bench(2, "micro", "--op", "ring", "--max", "64", "--iters", "3")  # = allreduce --impl ours,mpi
    assert proc.returncode == 0 and "ours/mpi" in proc.stdout and "naive" not in proc.stdout, proc.stderr
    cout = tmp_path / "c.h5"
    proc = bench(
        2, "micro", "--compress", "fp16", "--min", "262144", "--max", "262144", "--iters", "3", "--out", str(cout)
    )
    assert proc.returncode == 0 and "ours/dense" in proc.stdout and "wire %" in proc.stdout, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.strip().startswith("262144"))
    assert row.split()[-1] == "50.00", proc.stdout  # fp16 sends exactly half on the ring's path
    with h5py.File(cout) as f:
        assert f["micro/allreduce/ours/sent_bytes"][0] * 2 == f["micro/allreduce/ours/dense_bytes"][0] > 0
        assert json.loads(f.attrs["config"])["compress"] == "fp16"
    proc = bench(1, "overhead", "--steps", "10")
    assert proc.returncode == 0 and "overhead" in proc.stdout, proc.stderr


def test_harness_bias_script_runs():
    cmd = [mpiexec(), "-n", "2", sys.executable, "-m", "bench.perf.harness_bias", "--mib", "0.25", "--iters", "3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    row = proc.stdout.splitlines()[-1].split()
    assert row[:2] == ["0.25", "MiB"] and len([x for x in row if x.replace(".", "").isdigit()]) == 7, proc.stdout


def test_topology_benchmark_prints_flat_hierarchical_and_the_model():
    """bench.perf.topology end to end at 2 ranks on 2 virtual nodes over an emulated 50 us, 1 Gb/s link: the links
    measured as --allreduce auto measures them, then a row per size with both kernels' times, auto's time and choice
    and the model's (the model's own arithmetic: unit tests)."""
    cmd = [sys.executable, "-m", "bench.perf.topology", "--ranks", "2", "--per-node", "1", "--links", "50,1"]
    proc = subprocess.run([*cmd, "--sizes", "8", "65536", "--reps", "1"], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()[1:] if not line.startswith("#")]
    assert [r[:3] for r in rows] == [["2x1", "50,1", "8"], ["2x1", "50,1", "65536"]], proc.stdout
    assert all(float(r[3]) >= 0.05 and float(r[4]) >= 0.05 for r in rows), proc.stdout  # at least the latency
    assert all(float(r[6]) >= 0.05 and r[7] in ("flat", "hierarchical") for r in rows), proc.stdout
    assert "measured inside" in proc.stdout and "across" in proc.stdout


def test_perf_script_prints_every_goal_with_a_verdict():
    """The perf script runs end to end (tiny sizes, 2 launches) and judges every goal; its timings are not
    checked here (never timed tests), only that each goal line carries a measured number and a verdict."""
    cmd = [sys.executable, "-m", "bench.perf.kernels", "--ranks", "2", "--max-mib", "1", "--launches", "2"]
    cmd += ["--iters", "4", "--min-iters", "2", "--overhead-steps", "10"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    goals = [line for line in proc.stdout.splitlines() if line.startswith("goal ")]
    assert [g.split()[1] for g in goals] == ["1", "2", "3", "4", "4"], proc.stdout
    for line in goals:
        assert line.endswith(("holds", "MISSES")) and any(c.isdigit() for c in line.split(":")[1]), line
    assert "2 launches" in proc.stdout and proc.stderr.count("launch ") == 2


@pytest.mark.parametrize(
    "args,message",
    [
        (["--strategy", "nope"], "unknown strategy 'nope'"),  # refused while parsing, before torch is imported
        (["--batch-size", "5000"], "larger than the smallest partition"),  # refused in set-up, data loaded
    ],
)
def test_bad_input_one_message_nonzero_exit(args, message):
    """Two real launches; every other bad input is checked in this job's own path on 3 ranks, in one launch
    (tests/mpi/test_bad_input.py)."""
    proc = bench(3, "train", "--quiet", *args, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count(message) == 1, proc.stderr  # once, from rank 0
    assert "Traceback" not in proc.stderr


def run_with_failure(tmp_path, fail_rank: int, fail_step: int, *extra: str):
    """3 ranks; ``fail_rank`` fails at ``fail_step`` (--fail-mode in ``extra``). Returns (process, seconds)."""
    t = time.monotonic()
    args = ["--steps", "50", "--fail-rank", str(fail_rank), "--fail-step", str(fail_step), *extra]
    proc = bench(3, "train", *TINY, *args, "--out", str(tmp_path / "r.h5"), timeout=120)
    return proc, time.monotonic() - t


def test_failing_rank_aborts_job_naming_rank(tmp_path):
    proc, seconds = run_with_failure(tmp_path, 1, 2)
    assert proc.returncode != 0
    assert "rank 1 of 3 failed" in proc.stderr and "injected failure" in proc.stderr
    assert seconds < 100


def test_exception_outside_main_aborts_the_job():
    """An exception before run_main (e.g. an import failing on one node) must end the job, not hang its peers."""
    code = (
        "import bench.__main__, sys\n"
        "from mpi4py import MPI\n"
        "if MPI.COMM_WORLD.rank == 1:\n"
        "    raise ImportError('simulated broken install on one node')\n"
        "MPI.COMM_WORLD.Barrier()\n"
    )
    t = time.monotonic()
    proc = subprocess.run(
        [mpiexec(), "-n", "2", sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        env=dict(os.environ, MPIEXEC_TIMEOUT="80"),
    )
    assert proc.returncode != 0 and time.monotonic() - t < 60
    assert "rank 1 of 2 failed" in proc.stderr and "simulated broken install" in proc.stderr


def test_hung_rank_is_ended_by_the_watchdog(tmp_path):
    proc, seconds = run_with_failure(tmp_path, 2, 1, "--fail-mode", "hang", "--timeout", "5")
    assert proc.returncode != 0
    assert "timed out after 5 s waiting in step 2" in proc.stderr, proc.stderr  # --fail-step 1: the 2nd step
    assert seconds < 60


def rank_pids(marker: str) -> list[int]:
    """PIDs of the Python rank processes (not mpiexec or its proxies) whose command line contains ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if args and args[0].decode(errors="replace") == sys.executable and marker.encode() in b" ".join(args):
            pids.append(int(entry.name))
    return pids


def test_second_signal_ends_a_job_whose_rank_is_blocked_in_mpi(tmp_path):
    """Rank 1 blocks for ever in a receive, where no Python signal handler could run; the signal thread must
    still act. Signals go straight to the ranks (a launcher may escalate to SIGKILL on its own, which would hide
    whether our handling works); --timeout is long so neither the watchdog nor the grace period ends the job."""
    out = tmp_path / "r.h5"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    args = [*TINY, "--steps", "50", "--fail-rank", "1", "--fail-step", "3", "--fail-mode", "hang"]
    cmd = [
        mpiexec(),
        "-n",
        "2",
        sys.executable,
        "-m",
        "bench",
        "train",
        *args,
        "--flush-every",
        "2",
        "--timeout",
        "300",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)  # the flush after step 2 means both ranks are in the loop; rank 1 hangs at step 3
    assert out.exists(), "no flush within 120 s"
    time.sleep(1)
    t = time.monotonic()
    for _ in range(2):
        for pid in rank_pids(str(out)):
            os.kill(pid, signal.SIGTERM)
        time.sleep(1)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0 and time.monotonic() - t < 30, stderr
    assert "second signal (SIGTERM) while stopping" in stderr, stderr


def test_sigterm_keeps_completed_steps(tmp_path):
    out = tmp_path / "r.h5"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    train = ["train", "--model", "mlp", "--dataset", "digits", "--steps", "100000", "--quiet", "--eval-every", "0"]
    cmd = [mpiexec(), "-n", "2", sys.executable, "-m", "bench", *train, "--flush-every", "200", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)  # the first flush proves training is under way
    assert out.exists(), "no flush within 120 s"
    proc.send_signal(signal.SIGTERM)  # hydra forwards it to every rank
    stdout, stderr = proc.communicate(timeout=60)
    with h5py.File(out) as f:
        done = int(f.attrs["completed_steps"])
        assert f.attrs["status"] == "stopped" and f.attrs["stopped_by"] == "SIGTERM"
        assert 0 < done < 100000 and done % 10 == 0
        assert f["timing/total"].shape == (2, done) and (f["timing/total"][()] > 0).all()
    assert "stopped" in stdout, stderr


def _blocks_stop_signals(pid: int) -> bool:
    """True once the process has run bench.signals.block_early (SIGUSR1 in its blocked-signal mask)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigBlk:"))
    return bool(mask & (1 << (signal.SIGUSR1 - 1)))


def test_signal_during_setup_stops_at_the_first_agreed_step(tmp_path):
    """Slurm's warning can reach a job whose ranks still import torch or load data (this made CI fail once:
    the job aborted). The signal must be kept and the loop stop at its first agreement, after 10 steps."""
    out = tmp_path / "r.h5"
    train = ["train", "--model", "mlp", "--dataset", "digits", "--steps", "1000", "--quiet", "--eval-every", "0"]
    cmd = [mpiexec(), "-n", "2", sys.executable, "-m", "bench", *train, "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    pids: list[int] = []
    while time.monotonic() < deadline and proc.poll() is None:
        pids = rank_pids(str(out))
        if len(pids) == 2 and all(_blocks_stop_signals(pid) for pid in pids):
            break
        time.sleep(0.01)
    assert len(pids) == 2, "ranks did not start"
    assert not out.exists()  # still setting up
    for pid in pids:
        os.kill(pid, signal.SIGUSR1)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    with h5py.File(out) as f:
        assert f.attrs["status"] == "stopped" and f.attrs["stopped_by"] == "SIGUSR1"
        assert int(f.attrs["completed_steps"]) == 10


@pytest.mark.parametrize("strategy", ["ssp", "ps-async"])
def test_stop_file_ends_a_decoupled_run_in_order(tmp_path, strategy):
    """Workers of ps async / ssp are at different steps, so no collective can agree on a stop: it travels in
    the push headers and the servers' replies. The run must end cleanly with its file."""
    out, stop = tmp_path / "r.h5", tmp_path / "stop"
    mode = ["--strategy", "ssp"] if strategy == "ssp" else ["--strategy", "ps", "--ps-mode", "async"]
    train = ["train", *mode, "--model", "mlp", "--steps", "1000000", "--quiet", "--straggler", "3:2"]
    cmd = [mpiexec(), "-n", "4", sys.executable, "-m", "bench", *train, "--stop-file", str(stop), "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(8)
    stop.write_text("test stop\n")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    with h5py.File(out) as f:
        assert f.attrs["status"] == "stopped" and f.attrs["stopped_by"] == "test stop"
        done = f["timing/steps_done"][()]
        assert (done[1:] > 0).all()
        assert f["ps/updates/staleness"].size > 0
    assert "staleness" in stdout
    # workers took different numbers of steps (rank 3 is slowed): the summary gives their mean and range, not the
    # fastest worker's count as "N steps"
    workers = done[1:]
    assert f"{np.mean(workers):.1f} steps per worker on average ({workers.min()}-{workers.max()})" in stdout, stdout


def test_fedavg_256_clients_on_4_ranks_learns(tmp_path):
    """The issue's acceptance run: 256 clients, C = 0.1, E = 1, Dirichlet(0.5) digits, 20 rounds (on 4 ranks, not
    the issue's 8: the clients are logical, the same 256 on 3 client ranks; 8 ranks' start-up alone took 12 s of
    this machine's 2 cores)."""
    out = tmp_path / "f.h5"
    args = ["--strategy", "fedavg", "--clients", "256", "--fraction", "0.1", "--local-epochs", "1"]
    args += ["--dataset", "digits", "--partition", "dirichlet", "--alpha", "0.5", "--rounds", "20", "--eval-every", "5"]
    proc = bench(4, "train", *args, "--quiet", "--out", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out) as f:
        acc = f["metrics/test_accuracy"][()]
        assert f.attrs["status"] == "complete" and f["metrics/eval_step"].shape == (4,)
        assert acc[-1] > 0.3, acc  # chance is 0.1
        assert f["fedavg/sampled"][0].sum() == 20 * 26 and f["fedavg/clients/client"].shape == (520,)
        assert set(f["fedavg/clients/host_rank"][()].astype(int)) == {1, 2, 3}
        assert f["metrics/eval_step"][()].tolist() == [5, 10, 15, 20]  # round numbers from 1, as printed
        assert f["fedavg/download"][1:].sum() > 0 and f["fedavg/aggregator_receive"][0].sum() > 0
        assert f["fedavg/peak_rss"][0] > 0
    assert "test accuracy" in proc.stdout and "clients         sampled 520" in proc.stdout


@pytest.mark.parametrize("mode", ["hang", "raise"])
def test_fedavg_client_rank_that_never_answers_ends_the_job(tmp_path, mode):
    args = ["--strategy", "fedavg", "--clients", "4", "--fraction", "1", "--rounds", "5", "--model", "mlp"]
    args += ["--fail-rank", "2", "--fail-step", "1", "--fail-mode", mode, "--timeout", "5", "--quiet"]
    t = time.monotonic()
    proc = bench(3, "train", *args, "--out", str(tmp_path / "f.h5"), timeout=120)
    assert proc.returncode != 0 and time.monotonic() - t < 90
    if mode == "hang":
        assert "timed out after 5 s waiting in aggregator waiting for clients on ranks [2]" in proc.stderr, proc.stderr
    else:
        assert "rank 2 of 3 failed" in proc.stderr and "injected failure" in proc.stderr


def test_fedavg_drop_on_client_timeout_keeps_the_rounds(tmp_path):
    out = tmp_path / "f.h5"
    args = ["--strategy", "fedavg", "--clients", "4", "--fraction", "1", "--rounds", "5", "--model", "mlp", "--quiet"]
    args += ["--fail-rank", "2", "--fail-step", "2", "--fail-mode", "hang", "--timeout", "60"]
    args += ["--on-client-timeout", "drop", "--client-timeout", "4"]
    t = time.monotonic()
    proc = bench(3, "train", *args, "--out", str(out), timeout=120)
    assert proc.returncode != 0 and time.monotonic() - t < 50
    assert "client ranks [2] did not answer within 4 s in round 3" in proc.stderr, proc.stderr
    with h5py.File(out) as f:
        assert f.attrs["status"].startswith("failed") and int(f.attrs["completed_steps"]) == 3
        status, rnd = f["fedavg/clients/status"][()], f["fedavg/clients/round_number"][()]  # from 1
        ranks = f["fedavg/clients/host_rank"][()]
        assert (status[rnd < 3] == 0).all() and set(ranks[(rnd == 3) & (status == 3)]) == {2}
        assert f["fedavg/dropped"][0, 2] == 2 and f["metrics/test_accuracy"].shape == (1,)


def test_srun_without_pmi_guard():
    env = {"SLURM_NTASKS": "4", "SLURM_STEP_ID": "0", "SLURM_JOB_ID": "1"}
    proc = bench(1, "train", *TINY, env=env, timeout=60)
    assert proc.returncode != 0 and "srun --mpi=pmi2" in proc.stderr


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda_available(), reason="no CUDA device on this machine")
def test_train_on_cuda(tmp_path):
    out = tmp_path / "r.h5"
    proc = bench(2, "train", "--device", "cuda", "--model", "cnn", *TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out) as f:
        assert f.attrs["device"].startswith("cuda") and (f["timing/forward"][()] > 0).all()


def test_fedavg_round_benchmark_matches_the_single_process_loop():
    """The benchmark script end to end: the single-process baseline and two aggregation options (one static, one
    balanced) run the same rounds: the same final accuracy (timings are printed, not asserted). That every
    option gives the per-client model is tests/mpi/test_fedavg.py's (host and tree against client streaming,
    balanced against static, upload buffers bit for bit), at a fraction of this script's launches."""
    cmd = [sys.executable, "-m", "bench.perf.fedavg_round", "--ranks", "3", "--clients", "16", "--rounds", "3"]
    chosen = ["client, blocking uploads", "tree, balanced"]
    proc = subprocess.run(
        [*cmd, "--repeats", "1", "--variants", *chosen], capture_output=True, text=True, timeout=400, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    single = float(proc.stdout.split("accuracy ")[1].split()[0])
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("  client", "  host", "  tree"))]
    assert [r.split("  ")[1].strip() for r in rows] == chosen, proc.stdout
    assert all(abs(float(r.split()[-1]) - single) < 0.01 for r in rows), proc.stdout


def test_tree_aggregation_cannot_drop_silent_ranks():
    proc = bench(3, "train", "--strategy", "fedavg", "--aggregation", "tree", "--on-client-timeout", "drop")
    assert proc.returncode == 2 and "--aggregation tree cannot drop" in proc.stderr

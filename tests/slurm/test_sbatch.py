"""The real sbatch scripts on a real Slurm (../shared/slurm-local, started by .ci/run). Skipped where there is
no sbatch. Each job runs the venv of this pytest, writes into a temporary folder, and is small."""

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from bench.measure.appender import SCHEMA_VERSION
from tests.helpers import ROOT, bench

pytestmark = pytest.mark.skipif(shutil.which("sbatch") is None, reason="no sbatch on PATH (start a local Slurm)")


@dataclass
class Ended:
    """What one job left: ``sbatch --wait``'s exit code and output, the job's own log, its folder."""

    returncode: int
    stdout: str
    stderr: str
    logs: str
    folder: Path


def submit(folder: Path, *args, env=None) -> subprocess.Popen:
    """``sbatch --wait`` for one job writing into ``folder`` (RESULTS_DIR and its log), started, not waited for."""
    full_env = dict(os.environ, VENV=sys.prefix, RESULTS_DIR=str(folder), **(env or {}))
    cmd = ["sbatch", "--wait", f"--output={folder}/%x-%j.out", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ended(proc: subprocess.Popen, folder: Path, timeout: float = 300) -> Ended:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    logs = "\n".join(p.read_text(errors="replace") for p in folder.glob("*.out"))
    return Ended(proc.returncode, out, err, logs, folder)


SCRIPTS = {
    "ring": ("slurm/ring.sh", "ring", ["--steps", "6"]),
    "localsgd": ("slurm/localsgd.sh", "localsgd", ["--steps", "6"]),
    "ps-sync": ("slurm/ps.sh", "ps", ["--steps", "6"]),
    "ssp": ("slurm/ssp.sh", "ssp", ["--steps", "6"]),
    "fedavg": ("slurm/fedavg_256.sh", "fedavg", ["--rounds", "2"]),
}
"""Each script of slurm/ as a user submits it (results named ``{name}_{model}_n{ranks}_{job}.h5``)."""


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory) -> dict[str, Ended]:
    """Every job whose test reads only its outcome, submitted at once: the local Slurm advertises more CPUs than
    the jobs ask for, so they run side by side and the module waits for them once (``sbatch --wait`` polls every
    2 s; one after another they took 60 s here, together about 20 s). The requeue and time-limit tests keep
    their own jobs: they act on a running job or depend on its speed."""
    started = {}
    for name, (script, _, extra) in SCRIPTS.items():
        folder = tmp_path_factory.mktemp(name)
        started[name] = submit(folder, "--ntasks=3", script, *extra, "--quiet", env={"MODEL": "mlp"}), folder
    folder = tmp_path_factory.mktemp("nopmi")
    wrap = f"srun --mpi=none {sys.executable} -m bench train --steps 2 --quiet --out {folder}/x.h5"
    started["nopmi"] = submit(folder, "--ntasks=2", "--job-name=nopmi", f"--wrap={wrap}"), folder
    folder = tmp_path_factory.mktemp("sweep")
    env = dict(os.environ, VENV=sys.prefix, RESULTS_DIR=str(folder), MODEL="mlp", SIZES="1 2", WAIT="1")
    env["SBATCH_ARGS"] = f"--output={folder}/%x-%j.out"
    cmd = ["bash", "slurm/sweep.sh", "slurm/ring.sh", "--steps", "3", "--quiet"]
    sweep = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started["sweep"] = sweep, folder
    return {name: ended(proc, folder) for name, (proc, folder) in started.items()}


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_script_writes_results_with_job_provenance(side_by_side, name):
    job_ended = side_by_side[name]
    strategy = SCRIPTS[name][1]
    assert job_ended.returncode == 0, job_ended.stderr + job_ended.logs
    job = job_ended.stdout.split()[-1]
    out = job_ended.folder / f"{name}_mlp_n3_{job}.h5"
    with h5py.File(out) as f:
        assert f.attrs["strategy"] == strategy and f.attrs["world_size"] == 3
        assert f.attrs["slurm_job_id"] == job and "#SBATCH" in f.attrs["batch_script"]
        assert f.attrs["status"] == "complete" and (f["timing/total"][()] > 0).any(axis=1).all()
        assert f.attrs["schema_version"] == SCHEMA_VERSION
        if strategy == "fedavg":  # the same 256 logical clients on 2 client ranks
            assert json.loads(f.attrs["config"])["clients"] == 256
            assert json.loads(f.attrs["clients_of_rank"])["2"] == list(range(128, 256))


def test_sweep_submits_one_job_per_size(side_by_side):
    swept = side_by_side["sweep"]
    assert swept.returncode == 0, swept.stderr
    sizes = sorted(int(p.name.split("_n")[1].split("_")[0]) for p in swept.folder.glob("ring_mlp_n*.h5"))
    assert sizes == [1, 2]


def test_srun_without_pmi_is_an_error(side_by_side):
    nopmi = side_by_side["nopmi"]
    assert nopmi.returncode != 0
    assert "srun --mpi=pmi2" in nopmi.logs and not (nopmi.folder / "x.h5").exists()


def finished(path: Path) -> bool:
    try:
        with h5py.File(path, "r", swmr=True) as f:
            return f.attrs.get("status") == "complete"
    except OSError:
        return False


SETTLE_S = 5.0
"""Seconds a requeued job stays pending before the test makes it eligible: its previous instance must finish
cleaning up on the node first (a launch at once failed the job, seen on the local Slurm)."""


def wait_releasing_requeued(job: str, deadline: float, warn_once_exists: Path) -> None:
    """Wait for ``job`` to finish its results file. Once the file appears (the run's first flush), send the batch
    shell the time-limit warning (USR1) that Slurm sends at ``--signal=B:USR1@T``, once: deterministic, where a
    real time limit would race the machine's speed. Slurm holds a requeued job for about two minutes (its begin
    time), which the test does not wait out: a pending job is released and made eligible at once."""
    warned, seen, pending_since = False, [], time.monotonic()
    while time.monotonic() < deadline:
        show = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True).stdout
        fields = dict(f.split("=", 1) for f in show.split() if "=" in f)
        state = fields.get("JobState", "gone")
        seen = seen if seen and seen[-1] == state else [*seen, state]
        if state in ("COMPLETED", "gone") and finished(warn_once_exists):
            return  # a requeued job is briefly in other states: done only when its file says so
        if not warned and state == "RUNNING" and warn_once_exists.exists():
            subprocess.run(["scancel", "--batch", "--signal=USR1", job], check=True)
            warned = True
        pending_since = pending_since if state == "PENDING" else time.monotonic()
        if warned and state == "PENDING" and time.monotonic() - pending_since > SETTLE_S:
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
        time.sleep(0.2)
    subprocess.run(["scancel", job], capture_output=True)
    raise AssertionError(f"job {job} did not finish in time; its states: {' -> '.join(seen)}")


def test_a_job_stopped_by_the_time_limit_warning_requeues_and_resumes_to_the_uninterrupted_result(tmp_path):
    """--requeue in the script: the warning stops the run with a checkpoint, the job requeues itself, the requeued
    job (same id, same results file) resumes; the finished file holds two segments, and its loss rows are bit for
    bit those of the same run without Slurm or stops."""
    steps = ["--steps", "8000", "--quiet", "--eval-every", "0", "--seed", "4"]
    env = dict(os.environ, VENV=sys.prefix, RESULTS_DIR=str(tmp_path), MODEL="mlp")
    cmd = ["sbatch", "--parsable", f"--output={tmp_path}/%x-%j.out", "--ntasks=2", "slurm/ring.sh", *steps]
    job = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout.strip()
    out = tmp_path / f"ring_mlp_n2_{job}.h5"
    wait_releasing_requeued(job, time.monotonic() + 240, out)
    logs = "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("*.out"))
    whole = tmp_path / "whole.h5"
    assert bench(2, "train", "--model", "mlp", *steps, "--out", str(whole)).returncode == 0
    with h5py.File(out) as f, h5py.File(whole) as g:
        segments = json.loads(f.attrs["segments"])
        assert f.attrs["status"] == "complete" and len(segments) == 2, logs
        assert segments[0]["stopped_by"] == "SIGUSR1" and segments[1]["slurm_restart_count"] == 1
        assert np.array_equal(f["metrics/loss"][()], g["metrics/loss"][()])
    assert "scontrol requeue" in logs


def test_time_limit_warning_keeps_completed_steps(tmp_path):
    proc = submit(
        tmp_path,
        "--ntasks=2",
        "--time=00:01:00",
        "--signal=B:USR1@50",
        "slurm/ring.sh",
        "--steps",
        "100000000",
        "--quiet",
        "--eval-every",
        "0",
        env={"MODEL": "mlp", "REQUEUE": "0"},  # the requeue is the test above's
    )
    job_ended = ended(proc, tmp_path)
    assert job_ended.returncode == 0, job_ended.stderr + job_ended.logs
    (out,) = tmp_path.glob("ring_mlp_n2_*.h5")
    with h5py.File(out) as f:
        done = int(f.attrs["completed_steps"])
        assert f.attrs["status"] == "stopped" and f.attrs["stopped_by"] == "SIGUSR1"
        assert done > 0 and f["timing/total"].shape == (2, done)

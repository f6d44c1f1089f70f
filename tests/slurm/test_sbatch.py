"""The real sbatch scripts on a real Slurm (../shared/slurm-local, started by .ci/run). Skipped where there is
no sbatch. Each job runs the venv of this pytest, writes into a temporary folder, and is small."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(shutil.which("sbatch") is None, reason="no sbatch on PATH (start a local Slurm)")


def sbatch(tmp_path, *args, env=None, timeout=300):
    full_env = dict(os.environ, VENV=sys.prefix, RESULTS_DIR=str(tmp_path), **(env or {}))
    cmd = ["sbatch", "--wait", f"--output={tmp_path}/%x-%j.out", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
    logs = "\n".join(p.read_text(errors="replace") for p in Path(tmp_path).glob("*.out"))
    return proc, logs


@pytest.mark.parametrize("script,strategy", [("slurm/ring.sh", "ring"), ("slurm/localsgd.sh", "localsgd")])
def test_script_writes_results_with_job_provenance(tmp_path, script, strategy):
    proc, logs = sbatch(tmp_path, "--ntasks=3", script, "--steps", "6", "--quiet", env={"MODEL": "mlp"})
    assert proc.returncode == 0, proc.stderr + logs
    job = proc.stdout.split()[-1]
    out = tmp_path / f"{strategy}_mlp_n3_{job}.h5"
    with h5py.File(out) as f:
        assert f.attrs["strategy"] == strategy and f.attrs["world_size"] == 3
        assert f.attrs["slurm_job_id"] == job and "#SBATCH" in f.attrs["batch_script"]
        assert f.attrs["status"] == "complete" and (f["timing/step"][()] > 0).all()


def test_time_limit_warning_keeps_completed_steps(tmp_path):
    proc, logs = sbatch(
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
        env={"MODEL": "mlp"},
    )
    assert proc.returncode == 0, proc.stderr + logs
    (out,) = tmp_path.glob("ring_mlp_n2_*.h5")
    with h5py.File(out) as f:
        done = int(f.attrs["completed_steps"])
        assert f.attrs["status"] == "stopped" and f.attrs["stopped_by"] == "SIGUSR1"
        assert done > 0 and f["timing/step"].shape == (2, done)


def test_srun_without_pmi_is_an_error(tmp_path):
    wrap = f"srun --mpi=none {sys.executable} -m bench train --steps 2 --quiet --out {tmp_path}/x.h5"
    proc, logs = sbatch(tmp_path, "--ntasks=2", "--job-name=nopmi", f"--wrap={wrap}")
    assert proc.returncode != 0
    assert "srun --mpi=pmi2" in logs and not (tmp_path / "x.h5").exists()

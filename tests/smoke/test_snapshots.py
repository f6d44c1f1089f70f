"""A decoupled run (ps async) killed outright keeps the steps its ranks had reported (bench.measure.snapshots)."""

import os
import signal
import subprocess
import sys
import time

from analysis.data.load import open_results
from tests.helpers import ROOT, mpiexec
from tests.smoke.test_commands import rank_pids


def _read(out):
    try:
        with open_results(str(out)) as f:  # the writer is running (or was killed): SWMR read
            return f.attrs["status"], f["timing/steps_done"][()]
    except (OSError, KeyError):
        return None, None


def test_sigkilled_async_run_keeps_every_ranks_reported_steps(tmp_path):
    out = tmp_path / "async.h5"
    train = ["train", "--strategy", "ps", "--ps-mode", "async", "--model", "mlp", "--dataset", "digits"]
    train += ["--steps", "100000", "--quiet", "--eval-every", "0", "--flush-every", "20", "--out", str(out)]
    cmd = [mpiexec(), "-n", "3", sys.executable, "-m", "bench", *train]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        steps = None
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            status, steps = _read(out)
            if steps is not None and (steps >= 40).all():  # every rank has reported at least twice
                break
        assert steps is not None and (steps >= 40).all(), f"no snapshot from every rank in 120 s: {steps}"
        for pid in rank_pids(str(out)):
            os.kill(pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)
    status, steps = _read(out)
    assert status == "running"
    with open_results(str(out)) as f:
        forward, server = f["timing/forward"][()], f["ps/server_receive"][()]
        for rank in (1, 2):  # workers: every reported step has its per-layer forward times
            assert (forward[rank, : steps[rank]] > 0).all(), rank  # (rows past it may be in, not yet counted)
        assert steps[0] > 0 and (server[0, : steps[0]] >= 0).all() and server[0, : steps[0]].sum() > 0
    assert list(tmp_path.glob("*.rows")), "the row files of a killed run stay beside its file"
    report = subprocess.run(
        [sys.executable, "-m", "analysis", "tables", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert report.returncode == 0 and "ps" in report.stdout, report.stderr


def test_finished_run_removes_its_snapshots(tmp_path):
    out = tmp_path / "ssp.h5"
    (tmp_path / "ssp.h5.rank1.rows").write_bytes(b"a killed run's row file")
    train = ["train", "--strategy", "ssp", "--staleness", "1", "--model", "mlp", "--dataset", "digits"]
    train += ["--steps", "30", "--quiet", "--flush-every", "5", "--out", str(out)]
    proc = subprocess.run(
        [mpiexec(), "-n", "3", sys.executable, "-m", "bench", *train],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    status, steps = _read(out)
    assert status == "complete" and steps.max() < 999
    assert not list(tmp_path.glob("*.rows*"))

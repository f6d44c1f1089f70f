"""Faults as a user meets them: a run that diverges, a rank that hangs (issue 14); launched as a user would."""

import time

import h5py
import pytest

from bench.run.divergence import EXIT_DIVERGED
from tests.helpers import bench

DIVERGING = {  # --lr 1e6 makes the loss NaN within a few steps (rounds) on every strategy
    "ring": (2, ["--strategy", "ring", "--steps", "40"], "step"),
    "fedavg": (3, ["--strategy", "fedavg", "--rounds", "30", "--clients", "8", "--fraction", "0.5"], "round"),
    "ps-async": (3, ["--strategy", "ps", "--ps-mode", "async", "--steps", "60"], "step"),
}


@pytest.mark.parametrize("name", DIVERGING)
def test_divergence_is_a_result_with_its_own_exit_code(tmp_path, name):
    """Status diverged, the first row and rank named (in the file, the summary and one stderr line from rank 0),
    the file kept with the rows up to the stop, and exit code EXIT_DIVERGED. Stops at the next agreed row:
    well before the planned 40 steps (30 rounds)."""
    ranks, args, unit = DIVERGING[name]
    out = tmp_path / "d.h5"
    proc = bench(ranks, "train", *args, "--lr", "1e6", "--batch-size", "8", "--quiet", "--out", str(out), timeout=120)
    assert proc.returncode == EXIT_DIVERGED, proc.stderr
    assert proc.stderr.count("syncbench: the run diverged (non-finite values at ") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    with h5py.File(out) as f:
        assert f.attrs["status"] == "diverged"
        where = f.attrs["stopped_by"]
        assert where.startswith(f"non-finite values at {unit} ") and " on rank " in where, where
        row = int(where.split(f"{unit} ")[1].split()[0])
        assert row < f.attrs["completed_steps"] < 30, (row, f.attrs["completed_steps"])
    assert f"(diverged, {where}" in proc.stdout


def test_a_finite_run_is_not_diverged(tmp_path):
    """The mutation guard: the same run at a sane learning rate completes with exit code 0."""
    out = tmp_path / "ok.h5"
    proc = bench(2, "train", "--strategy", "ring", "--steps", "12", "--batch-size", "8", "--quiet", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out) as f:
        assert f.attrs["status"] == "complete" and f.attrs["stopped_by"] == ""


@pytest.mark.parametrize("strategy", ["ring", "fedavg"])
def test_a_hung_rank_is_named_and_every_rank_dumps_its_stack(tmp_path, strategy):
    """Rank 2 hangs (--fail-mode hang: a receive nobody answers) in row 1: the watchdog of a rank waiting on it
    fires after --timeout, asks every rank where it is, names rank 2 as the one the others wait for, and every
    rank's Python stack reaches stderr, prefixed with its rank; the job ends within --timeout + a few seconds."""
    args = {
        "ring": ["--strategy", "ring", "--steps", "20"],
        "fedavg": ["--strategy", "fedavg", "--rounds", "5", "--clients", "4", "--fraction", "1", "--model", "mlp"],
    }[strategy]
    args += ["--fail-rank", "2", "--fail-step", "1", "--fail-mode", "hang", "--timeout", "5", "--batch-size", "8"]
    t = time.monotonic()
    proc = bench(3, "train", *args, "--quiet", "--out", str(tmp_path / "h.h5"), timeout=120)
    seconds = time.monotonic() - t
    assert proc.returncode != 0 and seconds < 45, (proc.returncode, seconds)
    err = proc.stderr
    assert "timed out after 5 s waiting in" in err and "where the ranks are:" in err, err
    behind = err.split("ranks furthest behind (the others wait for them): ")[1].split(" at ")[0]
    assert behind == "[2]", err
    for rank in range(3):
        assert f"syncbench: rank {rank} stack: " in err, (rank, err)
    hung = [line for line in err.splitlines() if line.startswith("syncbench: rank 2 stack")]
    assert any("in inject_failure" in line for line in hung), err


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_non_finite_learning_rate_is_bad_input(value):
    proc = bench(2, "train", "--lr", value, "--steps", "2", "--quiet", timeout=60)
    assert proc.returncode == 2 and proc.stderr.count(f"--lr must be a finite number, got {value}") == 1, proc.stderr
    assert "Traceback" not in proc.stderr

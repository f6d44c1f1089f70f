"""``bench train --resume`` as a user runs it: a run stopped by its stop file resumes, is SIGKILLed in the middle of
writing a checkpoint (the previous one stays valid), and resumes again to the uninterrupted run's rows; a finished
run says so and exits 0; a broken checkpoint exits 2 with one line and leaves the results file as it was."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np

from tests.helpers import bench

RUN = ("train", "--model", "mlp", "--steps", "30", "--eval-every", "4", "--quiet", "--seed", "2")
KILL_IN_CHECKPOINT_AT_ROW_20 = ("--fail-rank", "1", "--fail-step", "19", "--fail-mode", "kill-in-checkpoint")


def test_stop_resume_kill_mid_checkpoint_and_resume_again(tmp_path):
    whole, parted, stop = tmp_path / "whole.h5", tmp_path / "parted.h5", tmp_path / "stop"
    assert bench(2, *RUN, "--out", str(whole)).returncode == 0
    stop.write_text("SIGUSR1")
    first = bench(2, *RUN, "--out", str(parted), "--stop-file", str(stop))
    assert first.returncode == 0 and "10 steps (stopped, SIGUSR1)" in first.stdout, first.stderr
    every = ("--checkpoint-every", "5")  # rank 1 is SIGKILLed halfway through writing its piece of step 20's
    killed = bench(2, *RUN, *every, "--out", str(parted), "--resume", *KILL_IN_CHECKPOINT_AT_ROW_20)
    checkpoints = tmp_path / "parted.h5.ckpt"
    assert killed.returncode != 0 and (checkpoints / "row-20" / ".rank-1.npz.tmp").stat().st_size > 0, killed.stderr
    assert '"row": 15' in (checkpoints / "manifest.json").read_text()  # the one before stays the valid one
    resumed = bench(2, *RUN[:-3], "--seed", "2", *every, "--out", str(parted), "--resume")  # not --quiet: says where
    assert resumed.returncode == 0 and "30 steps (complete)" in resumed.stdout, resumed.stderr
    assert f"resuming {parted} after step 15" in resumed.stdout
    with h5py.File(whole) as a, h5py.File(parted) as b:
        for name in ("metrics/loss", "metrics/test_accuracy", "metrics/eval_step"):
            assert np.array_equal(a[name][()], b[name][()]), name
        written = np.flatnonzero(b["timing/checkpoint"][()].min(axis=0) > 0) + 1  # rows with a checkpoint, from 1
        assert written.tolist() == [10, 15, 20, 25] and np.count_nonzero(b["timing/checkpoint"][()]) == 2 * 4
        assert [(s["start"], s["end"]) for s in json.loads(b.attrs["segments"])] == [(1, 10), (11, 15), (16, 30)]
    again = bench(2, *RUN, "--out", str(parted), "--resume")
    assert again.returncode == 0 and "is complete (30 steps); nothing to resume" in again.stdout


def test_a_broken_checkpoint_is_one_message_and_touches_nothing(tmp_path):
    out, stop = tmp_path / "r.h5", tmp_path / "stop"
    stop.write_text("SIGTERM")
    assert bench(2, *RUN, "--out", str(out), "--stop-file", str(stop)).returncode == 0
    lost = tmp_path / "lost.h5"  # a second stopped run, copied (a launch costs seconds here)
    shutil.copytree(tmp_path / "r.h5.ckpt", tmp_path / "lost.h5.ckpt")
    (tmp_path / "r.h5.ckpt" / "row-10" / "rank-1.npz").write_bytes(b"not a checkpoint")
    before = out.read_bytes()
    broken = bench(2, *RUN, "--out", str(out), "--resume")
    assert broken.returncode == 2 and "checkpoint piece" in broken.stderr and "unreadable" in broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1 and "Traceback" not in broken.stderr
    assert out.read_bytes() == before
    other = bench(2, *RUN, "--out", str(out), "--resume", "--lr", "0.3")
    assert other.returncode == 2 and "--lr differ" in other.stderr
    # the results file gone, its checkpoint kept: one message, and no empty file created
    gone = bench(2, *RUN, "--out", str(lost), "--resume")
    assert gone.returncode == 2 and "is missing" in gone.stderr and not lost.exists(), gone.stderr

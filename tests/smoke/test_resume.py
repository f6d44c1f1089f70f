"""``bench train --resume`` as a user runs it: a run stopped by its stop file resumes to the uninterrupted run's
rows, past the debris of a checkpoint killed mid-write; a finished run says so and exits 0; a broken checkpoint
exits 2 with one line and leaves the results file as it was."""

from __future__ import annotations

import h5py
import numpy as np

from tests.helpers import bench

RUN = ("train", "--model", "mlp", "--steps", "30", "--eval-every", "4", "--quiet", "--seed", "2")


def test_stop_resume_and_the_checkpoint_debris_of_a_kill(tmp_path):
    whole, parted, stop = tmp_path / "whole.h5", tmp_path / "parted.h5", tmp_path / "stop"
    assert bench(2, *RUN, "--out", str(whole)).returncode == 0
    stop.write_text("SIGUSR1")
    first = bench(2, *RUN, "--out", str(parted), "--stop-file", str(stop))
    assert first.returncode == 0 and "10 steps (stopped, SIGUSR1)" in first.stdout, first.stderr
    debris = tmp_path / "parted.h5.ckpt" / "row-20"  # a later checkpoint killed mid-write: pieces, no manifest
    debris.mkdir()
    (debris / "rank-0.npz").write_bytes(b"PK\x03\x04 truncated")
    (debris / ".rank-1.npz.tmp").write_bytes(b"")
    resumed = bench(2, *RUN[:-3], "--seed", "2", "--out", str(parted), "--resume")  # not --quiet: says where
    assert resumed.returncode == 0 and "30 steps (complete)" in resumed.stdout, resumed.stderr
    assert f"resuming {parted} after step 10" in resumed.stdout
    with h5py.File(whole) as a, h5py.File(parted) as b:
        for name in ("metrics/loss", "metrics/test_accuracy", "metrics/eval_step"):
            assert np.array_equal(a[name][()], b[name][()]), name
        assert b["timing/checkpoint"][:, 9].min() > 0 and b["timing/checkpoint"][:, 10:].max() == 0
    again = bench(2, *RUN, "--out", str(parted), "--resume")
    assert again.returncode == 0 and "is complete (30 steps); nothing to resume" in again.stdout


def test_a_broken_checkpoint_is_one_message_and_touches_nothing(tmp_path):
    out, stop = tmp_path / "r.h5", tmp_path / "stop"
    stop.write_text("SIGTERM")
    assert bench(2, *RUN, "--out", str(out), "--stop-file", str(stop)).returncode == 0
    (tmp_path / "r.h5.ckpt" / "row-10" / "rank-1.npz").write_bytes(b"not a checkpoint")
    before = out.read_bytes()
    broken = bench(2, *RUN, "--out", str(out), "--resume")
    assert broken.returncode == 2 and "checkpoint piece" in broken.stderr and "unreadable" in broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1 and "Traceback" not in broken.stderr
    assert out.read_bytes() == before
    other = bench(2, *RUN, "--out", str(out), "--resume", "--lr", "0.3")
    assert other.returncode == 2 and "--lr differ" in other.stderr
    lost = tmp_path / "lost.h5"
    assert bench(2, *RUN, "--out", str(lost), "--stop-file", str(stop)).returncode == 0
    lost.unlink()  # the results file gone, its checkpoint kept: one message, and no empty file created
    gone = bench(2, *RUN, "--out", str(lost), "--resume")
    assert gone.returncode == 2 and "is missing" in gone.stderr and not lost.exists(), gone.stderr

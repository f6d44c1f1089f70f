"""Checkpoint pieces without MPI: state as named arrays round-trips (bench.runtime.state), the results file is cut
back to a checkpoint (Appender.resume), evaluations made only because a run stopped are not kept, and --resume
refuses another run's checkpoint. References: hand-built values, h5py's own reading of the file."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from bench.config import build
from bench.measure.appender import Appender
from bench.run.checkpoint import MANIFEST, folder, read_manifest, scheduled_evaluations
from bench.runtime.errors import UsageError
from bench.runtime.state import Stateful


class Part(Stateful):
    state_attributes = ("array", "tensor", "count", "rate", "per_client", "pairs", "buffers", "absent", "inner")

    def __init__(self, inner=None):
        self.array = np.zeros(3, np.float32)
        self.tensor = torch.zeros(2, dtype=torch.float64)
        self.count, self.rate = 0, 0.0
        self.per_client: dict = {}
        self.pairs: dict = {}
        self.buffers = [np.zeros(2), torch.zeros(1)]
        self.absent = None
        self.inner = inner


def test_state_round_trips_into_the_objects_in_place():
    """Arrays and tensors come back into the same objects (views and optimizer references stay valid); numbers
    as Python numbers; dicts keyed by client id or (client, layer) with entries the template lacks. Mutations
    caught: a copy instead of in place, keys lost, a tuple key read as a string, a number read as an array."""
    src = Part(Part())
    src.array[:] = [1, 2, 3]
    src.tensor += 0.5
    src.count, src.rate = 7, 0.25
    src.per_client = {3: np.ones(2, np.float32), 11: np.arange(2.0)}
    src.pairs = {(4, 0): np.full(1, 9.0), (4, 1): np.full(1, 8.0)}
    src.buffers[0][:] = 4
    src.inner.count = 2
    state = src.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    dst = Part(Part())
    array, tensor, buffer = dst.array, dst.tensor, dst.buffers[1]
    dst.load_state_dict(state)
    assert dst.array is array and dst.tensor is tensor and dst.buffers[1] is buffer
    assert dst.array.tolist() == [1, 2, 3] and dst.tensor.tolist() == [0.5, 0.5]
    assert (dst.count, dst.rate) == (7, 0.25) and type(dst.count) is int and type(dst.rate) is float
    assert sorted(dst.per_client) == [3, 11] and dst.per_client[11].tolist() == [0.0, 1.0]
    assert sorted(dst.pairs) == [(4, 0), (4, 1)] and dst.pairs[(4, 1)].tolist() == [8.0]
    assert dst.absent is None and dst.inner.count == 2 and dst.buffers[0].tolist() == [4, 4]
    src.array[:] = 0  # the state is a snapshot, not a view of the live buffers (mutation caught: copy=False)
    src.tensor.zero_()
    assert state["array"].tolist() == [1, 2, 3] and state["tensor"].tolist() == [0.5, 0.5]


def test_optimizer_state_restores_the_next_step_bit_for_bit():
    """torch's Adam after three steps, restored into a fresh optimizer: the fourth step is identical, and its step
    counter keeps its shape (a 0-d tensor). Mutation caught: the per-parameter state dropped or reshaped."""
    torch.manual_seed(0)
    x = torch.randn(4, 3)

    def model_and_optimizer():
        torch.manual_seed(1)
        model = torch.nn.Linear(3, 2)
        return model, torch.optim.Adam(model.parameters(), lr=0.1)

    class Holder(Stateful):
        state_attributes = ("model", "optimizer")

    a, b = Holder(), Holder()
    a.model, a.optimizer = model_and_optimizer()
    b.model, b.optimizer = model_and_optimizer()
    for _ in range(3):
        a.optimizer.zero_grad()
        a.model(x).pow(2).sum().backward()
        a.optimizer.step()
    b.load_state_dict(a.state_dict())
    assert b.optimizer.state_dict()["state"][0]["step"].shape == ()
    for h in (a, b):
        h.optimizer.zero_grad()
        h.model(x).pow(2).sum().backward()
        h.optimizer.step()
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))


def test_appender_resume_cuts_rows_and_growing_datasets_then_appends(tmp_path):
    """A file of 6 rows and 3 evaluations cut back to 4 rows and 2 evaluations: later rows are gone, the row scale
    is 1..4, and appending rows 5-6 again continues it (read back with h5py)."""
    path = str(tmp_path / "r.h5")
    writer = Appender(path, 2, "step", 2)
    block = np.arange(12, dtype=np.float64).reshape(2, 6)
    evals = {
        "metrics/eval_step": (np.array([2, 4, 6]), "step"),
        "metrics/test_accuracy": (np.array([0.1, 0.2, 0.3]), "1"),
    }
    writer.write({}, {"metrics/loss": (block, "1")}, 0, evals)
    writer.close()
    lengths = dict(writer.lengths)
    assert lengths["metrics/eval_step"] == 3
    again = Appender(path, 2, "step", 2)
    again.resume(4, lengths | {"metrics/eval_step": 2, "metrics/test_accuracy": 2})
    with h5py.File(path, "r", swmr=True) as f:
        assert f["metrics/loss"].shape == (2, 4) and f["step"][()].tolist() == [1, 2, 3, 4]
        assert f["metrics/test_accuracy"][()].tolist() == [0.1, 0.2]
    again.write({}, {"metrics/loss": (-block[:, 4:], "1")}, 4, {"metrics/eval_step": (np.array([2, 4, 6]), "step")})
    again.close()
    with h5py.File(path, "r") as f:
        assert f["metrics/loss"][()].tolist() == [[0, 1, 2, 3, -4, -5], [6, 7, 8, 9, -10, -11]]
        assert f["step"][()].tolist() == [1, 2, 3, 4, 5, 6] and f["metrics/eval_step"][()].tolist() == [
            3,
            5,
            7,
        ]  # stored from 1


def test_an_evaluation_made_only_at_the_stop_is_not_kept():
    """Every 4 rows: a stop at row 10 evaluated there (row index 9) only because it stopped; at row 8 it was due."""
    evals = [(3, 0.5, 1.0), (7, 0.6, 0.9), (9, 0.7, 0.8)]
    kept, lengths = scheduled_evaluations(evals, 10, 4, {"metrics/eval_step": 3, "other": 5})
    assert kept == evals[:2] and lengths == {"metrics/eval_step": 2, "other": 5}
    assert scheduled_evaluations(evals[:2], 8, 4, {"x": 1}) == (evals[:2], {"x": 1})


def write_manifest(cfg, ranks: int, row: int, **config_changes) -> None:
    where = folder(cfg.out)
    where.mkdir()
    config = json.loads(cfg.to_json()) | config_changes
    (where / MANIFEST).write_text(
        json.dumps({"row": row, "unit": "step", "world_size": ranks, "config": config, "pieces": []})
    )


@pytest.mark.parametrize(
    ("ranks", "row", "changes", "message"),
    [
        (4, 5, {}, "written by 4 ranks, this job has 2"),
        (2, 5, {"lr": 0.5}, "--lr differ"),
        (2, 20, {}, "is complete"),
    ],
)
def test_resume_refuses_another_runs_checkpoint(tmp_path, ranks, row, changes, message):
    cfg = build({"steps": 20, "out": str(tmp_path / "r.h5"), "resume": True, "quiet": True})
    write_manifest(cfg, ranks, row, **changes, quiet=False)  # quiet may differ: it changes nothing computed
    with pytest.raises(UsageError, match=message):
        read_manifest(cfg, 2)


def test_resume_without_a_checkpoint_or_with_a_broken_one_and_decoupled_every_n_are_usage_errors(tmp_path):
    cfg = build({"out": str(tmp_path / "none.h5"), "resume": True})
    with pytest.raises(UsageError, match="no checkpoint beside"):
        read_manifest(cfg, 2)
    folder(cfg.out).mkdir()
    for text in ('{"row": 3', '{"row": 3, "unit": "step"}'):  # truncated; incomplete
        (folder(cfg.out) / MANIFEST).write_text(text)
        with pytest.raises(UsageError, match="is unreadable"):
            read_manifest(cfg, 2)
    with pytest.raises(UsageError, match="checkpoints when stopped"):
        build({"strategy": "ssp", "checkpoint_every": 5})
    assert build({"strategy": "ssp", "resume": True}).resume  # a decoupled run resumes from its stop


def test_lookup3_is_jenkins_hashlittle():
    """The test vectors printed by lookup3.c's driver (Bob Jenkins, 2006): the checksum HDF5 puts on metadata."""
    from bench.measure.h5flags import lookup3

    text = b"Four score and seven years ago"
    assert (lookup3(b""), lookup3(text), lookup3(text, 1)) == (0xDEADBEEF, 0x17770551, 0xCD628161)


def test_a_file_whose_writer_was_killed_is_resumed(tmp_path):
    """A writer killed outright (os._exit, no close) leaves the file marked open for writing, which HDF5 refuses to
    open for appending; resume clears the mark (as h5clear -s) and cuts the file back. Mutation caught: the mark
    left (h5py raises), a wrong checksum (HDF5 refuses the superblock)."""
    import subprocess
    import sys

    path = tmp_path / "killed.h5"
    script = (
        "import os, numpy as np\nfrom bench.measure.appender import Appender\n"
        f"a = Appender({str(path)!r}, 2, 'step', 2)\n"
        "a.write({}, {'metrics/loss': (np.arange(8.0).reshape(2, 4), '1')}, 0, {})\nos._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    with pytest.raises(OSError):
        h5py.File(path, "a")
    writer = Appender(str(path), 2, "step", 2)
    writer.resume(3, {})
    writer.close()
    with h5py.File(path, "r") as f:
        assert f["metrics/loss"][()].tolist() == [[0, 1, 2], [4, 5, 6]]

"""Incremental per-client state in checkpoints (bench/runtime/client_state.py, bench/run/pieces.py): a piece
written after a few clients changed holds only those, and read back with the earlier piece it names it is the
whole state. The oracle is the same state flattened whole, outside a checkpoint (bench.runtime.state)."""

import contextlib

import numpy as np

from bench.run.pieces import Piece
from bench.runtime.client_state import FULL_EVERY, ClientDict, writing_checkpoint
from bench.runtime.state import Stateful, restore


class Host(Stateful):
    state_attributes = ("model", "variates", "memory")

    def __init__(self):
        self.model = np.arange(3.0)  # rank-wide state beside the per-client dicts
        self.variates = ClientDict({k: np.full(3, float(k)) for k in range(4)})
        self.variates[0] = 0.5  # a Python number: stored as "variates/0" and "variates/0/#py", a nested name
        self.memory = ClientDict({(k, layer): np.full(2, 10.0 * k + layer) for k in (0, 1) for layer in (0, 1)})


def write_piece(folder, row: int, state: dict) -> None:
    (folder / f"row-{row}").mkdir(parents=True, exist_ok=True)
    np.savez(folder / f"row-{row}" / "rank-0.npz", **state)


def test_a_piece_holds_what_changed_and_reads_back_whole_with_the_piece_it_names(tmp_path):
    host = Host()
    with writing_checkpoint(5, full=True):
        first = host.state_dict()
    assert first["variates/#held"].tolist() == [5, 5, 5, 5]
    host.variates[1] = np.full(3, -1.0)  # replaced: written again
    host.variates.pop(2)  # gone: neither written nor listed
    host.variates[7] = np.full(3, 7.0)  # new
    host.memory[(1, 0)] = np.full(2, -5.0)
    with writing_checkpoint(9, full=False):
        second = host.state_dict()
    assert second["variates/#keys"].tolist() == [0, 1, 3, 7]
    assert second["variates/#held"].tolist() == [5, 9, 5, 9]
    assert sorted(k for k in second if k.startswith("variates/") and "#" not in k) == ["variates/1", "variates/7"]
    assert sorted(k for k in second if k.startswith("memory/") and "#" not in k) == ["memory/1-0"]
    write_piece(tmp_path, 5, first)
    write_piece(tmp_path, 9, second)
    whole = host.state_dict()  # outside a checkpoint: every entry, no #held
    assert not [k for k in whole if k.endswith("#held")]
    with contextlib.ExitStack() as stack:
        read = dict(Piece(tmp_path / "row-9" / "rank-0.npz", stack))
    assert read.keys() == whole.keys()
    assert all(np.array_equal(read[k], v) for k, v in whole.items())


def test_a_full_checkpoint_writes_everything_and_a_quiet_one_nothing():
    host = Host()
    with writing_checkpoint(3, full=True):
        host.state_dict()
    with writing_checkpoint(6, full=False):
        quiet = host.state_dict()
    assert [k for k in quiet if "#" not in k] == ["model"]  # no client changed since row 3: rank-wide state only
    assert quiet["variates/#held"].tolist() == [3, 3, 3, 3]
    with writing_checkpoint(9, full=True):
        again = host.state_dict()
    assert again["variates/#held"].tolist() == [9, 9, 9, 9] and "variates/0" in again
    assert FULL_EVERY > 1


def test_flattening_outside_a_checkpoint_has_no_side_effect_and_restore_keeps_the_type():
    host = Host()
    host.state_dict()
    assert host.variates.changed == {0, 1, 2, 3} and host.variates.held == {}
    restored = restore(host.state_dict(), "variates", host.variates)
    assert isinstance(restored, ClientDict) and sorted(restored) == [0, 1, 2, 3]
    assert restored.changed == {0, 1, 2, 3}  # a resumed run's first checkpoint writes every entry


def test_every_way_of_changing_an_entry_is_seen():
    d = ClientDict()
    d[1] = 1
    assert d.setdefault(2, 2) == 2 and d[2] == 2
    d.update({3: 3})
    assert d.to_write(4, full=False) == [1, 2, 3] and d.changed == set()
    named = ClientDict()
    named.update(x=1)
    assert named == {"x": 1} and named.changed == {"x"}
    d.setdefault(2, 99)  # present: not a change
    del d[1]
    assert d.to_write(8, full=False) == [] and d.held == {2: 4, 3: 4}
    d |= {5: 5}
    assert d.changed == {5}
    key, _ = d.popitem()
    assert key == 5 and d.to_write(9, full=False) == [] and d.held == {2: 4, 3: 4}  # a removed key drops out
    d.pop(2)
    assert d.to_write(10, full=True) == [3] and d.held == {3: 10}
    assert type(d.copy()) is dict and d.copy() == {3: 3}
    assert ClientDict(a=1) == {"a": 1} and ClientDict(a=1).changed == {"a"}
    d.clear()
    assert d.held == {} and d.changed == set()

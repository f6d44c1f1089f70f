"""Reading one rank's checkpoint piece as if it were whole.

An incremental checkpoint (:mod:`bench.runtime.client_state`) writes a per-client dict's changed entries only and
names, per entry, the row of the piece that holds it (``#held``). :class:`Piece` is the piece at ``row-N/rank-R.npz``
with those entries found in the pieces ``row-M/rank-R.npz`` of the rows they name: a read-only mapping of every
name the whole state would have, each array read from its file when asked for (``np.load`` reads an archive's
arrays on access).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from bench.runtime.client_state import HELD
from bench.runtime.state import KEYS, stored_key_name


def row_of(path: Path) -> int:
    return int(path.parent.name.split("-")[1])


class Piece(Mapping):
    """``path``'s arrays plus, for each per-client dict, its entries held in earlier pieces of the same rank.
    Files are opened in ``stack`` (closed with it)."""

    def __init__(self, path: Path, stack: contextlib.ExitStack):
        self.own = stack.enter_context(np.load(path))
        self.elsewhere: dict[str, Mapping] = {}
        row = row_of(path)
        wanted: dict[int, dict[str, set[str]]] = {}  # row -> dict name -> names of the entries it holds
        for held in (name for name in self.own.files if name.endswith(f"/{HELD}")):
            prefix = held[: -len(HELD) - 1]
            for stored, at in zip(self.own[f"{prefix}/{KEYS}"], self.own[held], strict=True):
                if int(at) != row:
                    wanted.setdefault(int(at), {}).setdefault(prefix, set()).add(stored_key_name(stored))
        for at, entries in wanted.items():
            older = stack.enter_context(np.load(path.parent.parent / f"row-{at}" / path.name))
            for name in older.files:
                prefix = next((p for p in entries if name.startswith(f"{p}/")), None)
                if prefix is not None and name[len(prefix) + 1 :].split("/")[0] in entries[prefix]:
                    self.elsewhere[name] = older
        self.names = [name for name in self.own.files if not name.endswith(f"/{HELD}")] + list(self.elsewhere)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.elsewhere[name][name] if name in self.elsewhere else self.own[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

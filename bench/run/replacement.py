"""A FedAvg checkpoint resumed on another number of ranks: the logical clients are placed anew.

FedAvg's clients are logical (:meth:`kernels.topology.Topology.federated` spreads K clients over the ranks), and
every random choice a client makes is drawn from a stream of (seed, client, round), not from its host: the rounds
do not depend on how many ranks host the clients. What does is where each client's state lives: SCAFFOLD's c_i,
FedDyn's g_k, FedLAMA's kept models, error-feedback memories. Each stateful part declares which of its attributes
are dicts keyed by client id (``per_client``, sub-paths in :mod:`bench.runtime.state`'s names; a key may be a
(client, ...) tuple). On a resume with another rank count, rank r takes the rank-wide part of its state (the
model it overwrites at each download, its random state) from the old piece of the same role (rank 0 from the old
rank 0, a client host from the old host of the same number, or the last one), and the per-client entries of the
clients it now hosts from whichever old pieces held them. Only those entries are read (``np.load`` reads an
archive's arrays on access): a rank's memory stays its own clients' state.

Not bit for bit: the host-level partial sums group the clients differently, so the aggregate's float32 rounding
differs; the README says so and tests/mpi/test_checkpoint.py checks the resumed run to that rounding.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from bench.runtime.state import KEYS


def client_prefixes(obj, name: str) -> list[str]:
    """The flattened names (as in a checkpoint piece) of every per-client dict in ``obj``'s state and its parts'."""
    found = [f"{name}/{path}" for path in getattr(obj, "per_client", ())]
    for attr in obj.state_attributes:
        part = getattr(obj, attr, None)
        if hasattr(part, "state_attributes"):
            found += client_prefixes(part, f"{name}/{attr}")
    return found


def client_of(stored_key) -> int:
    """The client a stored key names: the key itself, or a tuple key's first element (client, layer)."""
    return int(stored_key[0]) if np.ndim(stored_key) else int(stored_key)


def _under(name: str, prefixes: list[str]) -> str | None:
    return next((p for p in prefixes if name.startswith(f"{p}/")), None)


def placed_anew(own: Mapping, pieces: list[Mapping], prefixes: list[str], mine: set[int]) -> dict:
    """A rank's state on the new placement: ``own`` (the old piece it takes its rank-wide state from) without its
    per-client dicts, and each per-client dict made of the entries, from every old piece in ``pieces``, of the
    clients in ``mine`` (keys in client order). Each piece's names are read once; only the chosen arrays are."""
    state = {name: own[name] for name in own if _under(name, prefixes) is None}
    keys: dict[str, list] = {prefix: [] for prefix in prefixes}
    for piece in pieces:
        for name in piece:
            prefix = _under(name, prefixes)
            if prefix is None:
                continue
            rest = name[len(prefix) + 1 :]
            if rest == KEYS:
                keys[prefix] += [stored for stored in piece[name] if client_of(stored) in mine]
            elif int(rest.split("/")[0].split("-")[0]) in mine:  # the entry's key name: "k" or "k-layer"
                state[name] = piece[name]
    for prefix, found in keys.items():
        found.sort(key=lambda stored: tuple(np.atleast_1d(stored).tolist()))
        state[f"{prefix}/{KEYS}"] = np.array(found, dtype=np.int64)
    return state


def donor_rank(rank: int, old_size: int) -> int:
    """The old rank whose rank-wide state a new rank takes: the same rank, or the last old client host."""
    return min(rank, old_size - 1)

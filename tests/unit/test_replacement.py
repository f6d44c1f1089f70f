"""bench/run/replacement.py on hand-made checkpoint pieces (the names bench.runtime.state writes, spelled out here):
a rank's state on a new placement is its donor's rank-wide part plus exactly its clients' entries, from whichever
old piece held them."""

import numpy as np

from bench.run.replacement import client_of, client_prefixes, donor_rank, placed_anew

VAR = "strategy/algorithm/client_variates"
MEM = "strategy/host/encoder/feedback/memory"


def piece(rank: int, clients: list[int]) -> dict:
    """An old host's piece: its model and random state, c_i of its clients, memories per (client, layer)."""
    out = {"strategy/host/model/w": np.full(2, float(rank)), "rng/torch": np.array([rank], dtype=np.uint8)}
    out[f"{VAR}/#keys"] = np.array(clients, dtype=np.int64)
    out[f"{MEM}/#keys"] = np.array([(k, layer) for k in clients for layer in (0, 1)], dtype=np.int64)
    for k in clients:
        out[f"{VAR}/{k}"] = np.full(3, 10.0 * k)
        out[f"{VAR}/{k}/#py"] = np.zeros(0)  # a nested name under the entry (a Python number's marker)
        for layer in (0, 1):
            out[f"{MEM}/{k}-{layer}"] = np.full(1, 100.0 * k + layer)
    return out


OLD = [{"strategy/aggregator/values/0": np.zeros(2), f"{VAR}/#keys": np.zeros(0, dtype=np.int64)}]
OLD += [piece(1, [0, 1, 2]), piece(2, [3, 4, 5])]


def test_a_new_host_gets_its_clients_from_every_old_piece_and_nothing_else():
    got = placed_anew(OLD[2], [OLD[2], OLD[1], OLD[0]], [VAR, MEM], {2, 3})  # client 3's piece first
    assert got[f"{VAR}/#keys"].tolist() == [2, 3]  # in client order whatever the pieces' order
    assert got[f"{MEM}/#keys"].tolist() == [[2, 0], [2, 1], [3, 0], [3, 1]]
    assert got[f"{VAR}/2"].tolist() == [20.0] * 3 and got[f"{VAR}/3"].tolist() == [30.0] * 3
    assert got[f"{MEM}/2-1"].tolist() == [201.0] and got[f"{MEM}/3-0"].tolist() == [300.0]
    per_client = {k for k in got if k.startswith((f"{VAR}/", f"{MEM}/")) and not k.endswith("#keys")}
    assert per_client == {f"{VAR}/2", f"{VAR}/3", f"{VAR}/2/#py", f"{VAR}/3/#py"} | {
        f"{MEM}/2-0", f"{MEM}/2-1", f"{MEM}/3-0", f"{MEM}/3-1"}  # fmt: skip
    assert got[f"{MEM}/#keys"].tolist() == [[2, 0], [2, 1], [3, 0], [3, 1]]
    assert got["strategy/host/model/w"].tolist() == [2.0, 2.0] and got["rng/torch"].tolist() == [2]  # the donor's


def test_the_aggregator_and_a_host_without_clients_get_empty_dicts():
    got = placed_anew(OLD[0], OLD, [VAR], set())
    assert got[f"{VAR}/#keys"].size == 0 and got[f"{VAR}/#keys"].dtype == np.int64
    assert not [k for k in got if k.startswith(f"{VAR}/") and not k.endswith("#keys")]
    assert got["strategy/aggregator/values/0"].tolist() == [0.0, 0.0]


def test_every_client_lands_on_exactly_one_new_rank():
    new_hosts = [{0, 1}, {2, 3}, {4}, {5}]  # 2 old hosts -> 4 new ones
    placed = [placed_anew(OLD[donor_rank(r + 1, 3)], OLD, [VAR, MEM], mine) for r, mine in enumerate(new_hosts)]
    keys = sorted(k for p in placed for k in p[f"{VAR}/#keys"].tolist())
    assert keys == [0, 1, 2, 3, 4, 5]


def test_donor_and_client_of():
    assert [donor_rank(r, 3) for r in range(5)] == [0, 1, 2, 2, 2]
    assert client_of(np.int64(7)) == 7 and client_of(np.array([7, 1])) == 7


def test_prefixes_follow_the_declared_parts():
    class Memory:
        state_attributes = ("memory",)

    class Encoder:
        state_attributes = ("feedback",)
        per_client = ("feedback/memory",)

        def __init__(self):
            self.feedback = Memory()

    class Host:
        state_attributes = ("kept", "encoder", "absent")
        per_client = ("kept",)

        def __init__(self):
            self.encoder, self.absent = Encoder(), None

    assert client_prefixes(Host(), "strategy/host") == ["strategy/host/kept", "strategy/host/encoder/feedback/memory"]

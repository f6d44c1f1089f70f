"""Wire formats as named records: every named slot lands where the reader looks for it, and no two names of one
kind share a slot (a mutation that swaps two slots on one side only fails here, not as a silent wrong number)."""

import numpy as np
import pytest

from bench.strategies.fedavg import protocol as fed
from bench.strategies.ps import protocol as ps


@pytest.mark.parametrize("kind,names", [(ps.Kind.PUSH, ps.Push), (ps.Kind.BYE, ps.Bye), (ps.Kind.REPLY, ps.Reply)])
def test_ps_header_slots_round_trip(kind, names):
    values = {name.name: 10.0 + i for i, name in enumerate(names)}
    msg = ps.header(kind, **values)
    assert msg.shape == (ps.HEADER_LEN,) and msg[ps.KIND] == int(kind)
    assert all(msg[names[n]] == v for n, v in values.items())
    slots = [int(s) for s in names] + [ps.KIND]
    assert len(set(slots)) == len(slots) and max(slots) < ps.HEADER_LEN
    with pytest.raises(KeyError):
        ps.header(kind, NOT_A_SLOT=1.0)


def test_fedavg_client_header_and_record():
    head = fed.client_header(
        7, fed.ClientStatus.LATE, 25, train_s=0.5, injected_s=0.1, loss=2.0, steps=4, normaliser=3.5, forward_s=0.2,
        backward_s=0.25,
    )  # fmt: skip
    assert head.shape == (fed.HEADER_LEN,) and len(set(map(int, fed.Head))) == fed.HEADER_LEN
    got = {h.name: head[h] for h in fed.Head}
    expect = {"CLIENT": 7, "SAMPLES": 25, "STATUS": 2, "TRAIN_S": 0.5, "INJECTED_S": 0.1, "LOSS": 2.0}
    assert got == expect | {"STEPS": 4, "NORMALISER": 3.5, "FORWARD_S": 0.2, "BACKWARD_S": 0.25}
    log = fed.client_log([(0, 7, 1, 25, fed.ClientStatus.LATE, 0.5, 0.1, 2.0, 0.3, 0.2, 0.25)])
    assert log.dtype == fed.CLIENT_RECORD and log["status"][0] == 2 and log["arrival_s"][0] == 0.3
    assert (log["forward_s"][0], log["backward_s"][0]) == (0.2, 0.25)
    assert set(fed.CLIENT_RECORD_UNITS) == set(fed.CLIENT_RECORD.names)
    assert set(fed.STATUS_NAMES) == set(fed.ClientStatus)
    assert np.isnan(fed.client_log([(0, 1, 1, 0, 3, 0, 0, np.nan, 1.0, 0, 0)])["loss"][0])

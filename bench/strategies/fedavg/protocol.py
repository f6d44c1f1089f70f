"""The FedAvg wire format and the per-client record, shared by client hosts and the aggregator.

Per round, the aggregator sends the global model layer by layer (float32, ``model_tag(layer)``) to every rank
hosting a sampled client. Each sampled client then answers with one header (float64, ``header_tag``; slots
:class:`Head`) and, if its status is OK, its model layer by layer (``update_tag(layer)``). A dropped client sends
only its header, so the aggregator never waits for an update that will not come. The aggregator keeps one
:data:`CLIENT_RECORD` per sampled client per round; the results file holds them as ``fedavg/clients/*``.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from kernels.tags import Tag, tag_for


class Head(IntEnum):
    CLIENT = 0
    SAMPLES = 1  # n_k
    STATUS = 2  # ClientStatus
    TRAIN_S = 3  # seconds of local training
    INJECTED_S = 4  # seconds of simulated device slowness (--client-speed)
    LOSS = 5  # mean local loss
    STEPS = 6  # local SGD steps taken (tau_i)
    NORMALISER = 7  # FedNova's ||a_i||_1 (the step count for plain SGD)
    FORWARD_S = 8  # of TRAIN_S, the forward passes (the layers' hooks, as every strategy's timing/forward)
    BACKWARD_S = 9  # of TRAIN_S, the backward passes


HEADER_LEN = len(Head)


class ClientStatus(IntEnum):
    OK = 0
    DROPPED = 1  # failed to report (--dropout)
    LATE = 2  # reported after --deadline: received, left out of the average
    SILENT = 3  # its rank never answered within the client timeout (counted as dropped)


STATUS_NAMES = {
    ClientStatus.OK: "ok",
    ClientStatus.DROPPED: "dropped",
    ClientStatus.LATE: "late",
    ClientStatus.SILENT: "no answer (timed out; counted as dropped)",
}

CLIENT_RECORD = np.dtype(
    [
        ("round", np.float64),
        ("client", np.float64),
        ("rank", np.float64),
        ("samples", np.float64),
        ("status", np.float64),
        ("train_s", np.float64),
        ("injected_s", np.float64),
        ("loss", np.float64),
        ("arrival_s", np.float64),
        ("forward_s", np.float64),
        ("backward_s", np.float64),
    ]
)
"""One sampled client in one round, as the aggregator saw it (float64 fields, as schema 1 stores them)."""
CLIENT_RECORD_UNITS = {
    "round": "round",
    "client": "1",
    "rank": "rank",
    "samples": "samples",
    "status": "1",
    "train_s": "s",
    "injected_s": "s",
    "loss": "1",
    "arrival_s": "s",
    "forward_s": "s",
    "backward_s": "s",
}


def client_header(client: int, status: ClientStatus, samples=0.0, train_s=0.0, injected_s=0.0, loss=0.0,
                  steps=0, normaliser=0.0, forward_s=0.0, backward_s=0.0):  # fmt: skip
    head = np.zeros(HEADER_LEN, dtype=np.float64)
    head[[Head.FORWARD_S, Head.BACKWARD_S]] = forward_s, backward_s
    head[[Head.CLIENT, Head.SAMPLES, Head.STATUS]] = client, samples, int(status)
    head[[Head.TRAIN_S, Head.INJECTED_S, Head.LOSS]] = train_s, injected_s, loss
    head[[Head.STEPS, Head.NORMALISER]] = steps, normaliser
    return head


def client_log(rows: list[tuple]) -> np.ndarray:
    """The aggregator's rows as an array of CLIENT_RECORD."""
    return np.array([tuple(map(float, r)) for r in rows], dtype=CLIENT_RECORD)


def header_tag(tag_ub: int) -> int:
    return tag_for(Tag.FED_CONTROL, 0, tag_ub)


def model_tag(layer: int, tag_ub: int) -> int:
    return tag_for(Tag.FED_MODEL, layer, tag_ub)


def plan_tag(tag_ub: int) -> int:
    """FedLAMA's round plan (int8, 2 x layers: sent, then averaged at the round's end), before the model."""
    return tag_for(Tag.FED_CONTROL, 4, tag_ub)  # 1-3: the host reports (partials.py)


def choice_tag(part: int, tag_ub: int) -> int:
    """Power-of-choice: a host's candidates' losses (part 0: float64 (client, loss) pairs) and the aggregator's
    answer (part 1: int64 ids of the chosen among them, possibly none)."""
    return tag_for(Tag.FED_CONTROL, 5 + part, tag_ub)


def update_tag(layer: int, tag_ub: int) -> int:
    return tag_for(Tag.FED_UPDATE, layer, tag_ub)

"""Power-of-choice client selection's extra round trip (Cho, Wang, Joshi, AISTATS 2022; ``--selection
power-of-choice:D``), on explicit point-to-point messages.

Every rank knows the round's D candidates (:func:`bench.strategies.fedavg.sampling.sample_candidates`). The
aggregator sends the global model to the candidates' hosts as usual; each host evaluates the local loss of each of
its candidates on that model (the mean cross-entropy over all its training samples, in evaluation mode, no
gradient) and sends the (client, loss) pairs to rank 0 (``choice_tag(0)``, float64). Rank 0 keeps the m candidates
with the highest loss (:func:`bench.strategies.fedavg.sampling.highest_losses`) and answers every candidate host
with the ids it must train (``choice_tag(1)``, int64, possibly none). The round then goes on with the chosen
clients only. Times: the hosts' loss evaluation and message in ``fedavg/select``, the aggregator's wait and choice
in ``fedavg/aggregator_select``; the messages' bytes are in ``timing/comm_bytes`` (hosts).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from mpi4py import MPI

from bench.runtime.watchdog import WATCHDOG
from bench.strategies.fedavg.protocol import choice_tag
from bench.strategies.fedavg.sampling import highest_losses
from kernels.waiting import probe


def local_loss(model, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    """F_k(w): the mean loss over a client's samples, evaluated in chunks of ``batch``."""
    was_training = model.training
    model.train(False)
    total = 0.0
    with torch.no_grad():
        for lo in range(0, len(y), batch):
            total += float(F.cross_entropy(model(x[lo : lo + batch]), y[lo : lo + batch], reduction="sum"))
    model.train(was_training)
    return total / max(1, len(y))


def exchange_losses(comm: MPI.Comm, losses: dict[int, float], tag_ub: int) -> tuple[list[int], int]:
    """A host: send its candidates' losses, wait for the ids it must train; returns (those ids, bytes sent)."""
    pairs = np.array(sorted(losses.items()), dtype=np.float64).reshape(-1, 2)
    comm.Send(pairs, 0, choice_tag(0, tag_ub))
    status = MPI.Status()
    probe(comm, 0, choice_tag(1, tag_ub), status)
    chosen = np.empty(status.Get_count(MPI.INT64_T), dtype=np.int64)
    comm.Recv(chosen, 0, choice_tag(1, tag_ub))
    return chosen.tolist(), pairs.nbytes


def choose(comm: MPI.Comm, placement: dict[int, int], m: int, tag_ub: int, timeout: float) -> list[int]:
    """The aggregator: collect every candidate host's losses, keep the m highest, tell each host its chosen."""
    hosts = sorted(set(placement.values()))
    losses: dict[int, float] = {}
    status = MPI.Status()
    WATCHDOG.arm(timeout, f"aggregator waiting for candidate losses from ranks {hosts}")
    for _ in hosts:
        probe(comm, MPI.ANY_SOURCE, choice_tag(0, tag_ub), status)
        pairs = np.empty(status.Get_count(MPI.DOUBLE), dtype=np.float64)
        comm.Recv(pairs, status.Get_source(), choice_tag(0, tag_ub))
        losses.update({int(k): float(loss) for k, loss in pairs.reshape(-1, 2)})
    WATCHDOG.disarm()
    chosen = highest_losses(losses, m)
    answers = [np.array([k for k in chosen if placement[k] == h], dtype=np.int64) for h in hosts]
    MPI.Request.Waitall([comm.Isend(a, h, choice_tag(1, tag_ub)) for h, a in zip(hosts, answers)])
    return chosen

"""A client's local work in a round: which mini-batches it trains on, and what it reports.

``--local-epochs E`` (McMahan et al. 2017): E passes over the client's n_k samples in batches of B (a fresh
permutation per epoch from the stream (seed, client, round, epoch); a last partial batch is skipped, a client
smaller than B trains on one batch of all its samples). ``--local-steps T`` (as FedLAMA, SCAFFOLD and FedNova count
local work): T batches, cycling through further epochs' permutations as often as needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from bench.strategies.fedavg.protocol import ClientStatus, client_header
from bench.workload.streams import stream


def local_batches(cfg, client: int, round_: int, n: int) -> Iterator[np.ndarray]:
    """The sample indices of each local step of ``client`` in ``round_``."""
    batch, steps = min(cfg.batch_size, n), cfg.local_steps
    taken, epoch = 0, 0
    while steps or epoch < cfg.local_epochs:
        order = stream(cfg.seed, client, round_, epoch).permutation(n)
        for lo in range(0, n - batch + 1, batch):
            yield order[lo : lo + batch]
            taken += 1
            if taken == steps:
                return
        epoch += 1


@dataclass(frozen=True)
class Trained:
    """One client's finished local training, as its header reports it."""

    client: int
    loss: float  # mean local loss
    compute_s: float
    samples: int  # n_k
    steps: int  # tau_i
    normaliser: float  # FedNova's ||a_i||_1
    forward_s: float = 0.0  # of compute_s, the forward passes (layer hooks)
    backward_s: float = 0.0  # of compute_s, the backward passes

    @property
    def phases(self) -> tuple[float, float]:
        return self.forward_s, self.backward_s

    def header(self, slow_s: float) -> np.ndarray:
        return client_header(
            self.client, ClientStatus.OK, self.samples, self.compute_s, slow_s, self.loss, self.steps, self.normaliser,
            self.forward_s, self.backward_s,
        )  # fmt: skip

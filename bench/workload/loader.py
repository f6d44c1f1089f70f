"""Mini-batches from one partition: reshuffled every epoch from (seed, partition, epoch), equal-sized batches
(the last incomplete batch of an epoch is dropped, so every rank's batch has the same size and the averaged
gradient equals the gradient over the concatenated global batch)."""

from __future__ import annotations

import numpy as np
import torch

from bench.runtime.state import Stateful
from bench.workload.streams import stream


class PartitionLoader(Stateful):
    state_attributes = ("epoch", "_pos")  # the epoch's order is drawn again from (seed, part, epoch)

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        pos = self._pos
        if self.epoch >= 0:
            self.epoch -= 1
            self._new_epoch()
        self._pos = pos

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, part: int, device: torch.device):
        if batch_size > len(y):
            raise ValueError(f"batch size {batch_size} is larger than the partition ({len(y)} samples)")
        self.x = torch.from_numpy(np.ascontiguousarray(x)).to(device)
        self.y = torch.from_numpy(np.ascontiguousarray(y)).to(device)
        self.batch_size = batch_size
        self.seed, self.part = seed, part
        self.epoch, self._pos = -1, 0
        self._order = np.empty(0, dtype=np.int64)
        self._order_host = np.empty(0, dtype=np.int64)
        self.samples = self._order_host  # the partition's indices of the batch last drawn (--freeze-cache keys)
        self.per_epoch = len(y) // batch_size

    def _new_epoch(self) -> None:
        self.epoch += 1
        rng = stream(self.seed, self.part, self.epoch)
        self._order_host = rng.permutation(len(self.y))
        self._order = torch.from_numpy(self._order_host).to(self.x.device)
        self._pos = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._pos + self.batch_size > len(self._order):
            self._new_epoch()
        idx = self._order[self._pos : self._pos + self.batch_size]
        self.samples = self._order_host[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return self.x[idx], self.y[idx]

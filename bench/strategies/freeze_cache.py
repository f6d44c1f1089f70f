"""Activation caching for a frozen prefix (``--freeze-cache``; PipeTransformer's AutoCache: He et al., ICML 2021, Sec.
3.3).

Once the leading stages of the model (:mod:`bench.workload.stages`) are all frozen, their output for a training
sample no longer changes: it is computed once, when the sample is first drawn after the freeze, kept in host memory,
and handed to the next stage every later time the sample is drawn. A sample that does not fit in the bound
(``--freeze-cache-mb``) is recomputed each time. A batch with any sample not kept is computed whole (its kept rows
then replaced by their kept values), never as a smaller batch of the missing rows: a convolution or matrix product
may take another path for another batch size and round differently, and a resumed run, whose cache starts empty, must
compute what the uninterrupted run served from its cache bit for bit (tests/mpi/test_checkpoint.py: they differed in
the last bits at 3 ranks when only the missing rows were computed). When the prefix grows past another stage
boundary, the cache starts again at the new boundary.

What is cached must be a function of the sample alone. A BatchNorm layer in training mode normalises by the batch's
statistics, so its output depends on the batch it was drawn in: inside the cached stages every module runs in eval
mode (BatchNorm with its running statistics, kept frozen too), for cached and recomputed samples alike, as frozen
BatchNorm layers run in fine-tuning (torchvision's ``FrozenBatchNorm2d``). The suite has no data augmentation, so
nothing else makes a sample's prefix output change between epochs.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch


@contextlib.contextmanager
def eval_mode(stages):
    """The stages' modules in eval mode for the duration (their modes restored after)."""
    modules = [m for stage in stages for m in stage.modules]
    modes = [m.training for m in modules]
    for m in modules:
        m.train(False)
    try:
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


class ActivationCache:
    """The output of the frozen leading stages, per training sample of this rank's partition.

    ``loader`` is the run's :class:`bench.workload.loader.PartitionLoader`: its ``samples`` name the batch the
    forward pass is given. ``hits`` counts the samples served from the cache since :meth:`take_hits`."""

    def __init__(self, stage_layers: list[int], loader, bound_bytes: int):
        self.ends = np.cumsum(stage_layers)  # stage s and those before it hold the first ends[s] layers
        self.loader = loader
        self.bound = int(bound_bytes)
        self.boundary = 0  # stages cached
        self.hits = 0
        self._clear()

    def _clear(self) -> None:
        self.store: torch.Tensor | None = None  # host memory, one row per kept sample
        self.slot = np.full(len(self.loader.y), -1, dtype=np.int64)  # sample -> row of store, -1: not kept
        self.kept = 0

    @property
    def nbytes(self) -> int:
        """Host memory the kept activations take."""
        if self.store is None:
            return 0
        return self.kept * math.prod(self.store.shape[1:]) * self.store.element_size()

    def frozen(self, layers: int) -> None:
        """The frozen prefix is now ``layers`` long: cache the stages it covers whole (and start again if that moved
        the boundary)."""
        boundary = int(np.searchsorted(self.ends, layers, side="right"))
        boundary = min(boundary, len(self.ends) - 1)  # the last stage gives the loss's input: never cached
        if boundary != self.boundary:
            self.boundary = boundary
            self._clear()

    def take_hits(self) -> int:
        hits, self.hits = self.hits, 0
        return hits

    def lookup(self, x: torch.Tensor, stages) -> tuple[torch.Tensor, int]:
        """The output of the cached stages for batch ``x`` (the kept rows where all are kept; else the batch computed,
        its kept rows replaced by their kept values) and the index of the first stage still to run."""
        b = self.boundary
        if b == 0:
            return x, 0
        samples = self.loader.samples
        if len(samples) != len(x):
            raise RuntimeError(f"--freeze-cache: a batch of {len(x)} is not the {len(samples)} samples last drawn")
        slot = self.slot[samples]
        hit = slot >= 0
        if hit.all():
            self.hits += len(samples)
            return self.store[torch.from_numpy(slot)].to(x.device), b
        computed = self._compute(x, stages[:b])  # the whole batch: a row's values then never depend on how
        miss = np.flatnonzero(~hit)  # many rows were computed with it (kernels may pick another path by batch size)
        some_kept = bool(hit.any())
        self._keep(samples[miss], computed[torch.from_numpy(miss).to(x.device)] if some_kept else computed)
        if some_kept:
            rows = torch.from_numpy(np.flatnonzero(hit)).to(x.device)
            computed[rows] = self.store[torch.from_numpy(slot[hit])].to(x.device)
            self.hits += int(hit.sum())
        return computed, b

    @staticmethod
    def _compute(x: torch.Tensor, stages) -> torch.Tensor:
        with torch.no_grad(), eval_mode(stages):
            for stage in stages:
                x = stage.run(x)
        return x

    def _keep(self, samples: np.ndarray, computed: torch.Tensor) -> None:
        """Keep the rows of ``computed`` (for ``samples``) while the bound allows."""
        if self.store is None:
            per_sample = computed[0].numel() * computed.element_size()
            rows = min(len(self.slot), self.bound // per_sample)
            self.store = torch.empty((rows, *computed.shape[1:]), dtype=computed.dtype)
        take = min(len(samples), len(self.store) - self.kept)
        if take <= 0:
            return
        self.store[self.kept : self.kept + take] = computed[:take].cpu()
        self.slot[samples[:take]] = np.arange(self.kept, self.kept + take)
        self.kept += take

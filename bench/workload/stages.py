"""A model as a sequence of *stages*, each a function of the previous stage's output, whose composition is the
model's forward pass. A stage boundary is where a frozen prefix's output can be kept and reused
(``--freeze-cache``, :mod:`bench.strategies.freeze_cache`): a boundary inside a residual block or between a
convolution and its activation would keep a tensor the next layer does not take alone.

Every model in :mod:`bench.workload.models` is :class:`Staged`: its ``forward`` is :meth:`Staged.forward`, the
stages in order, so the stages cannot drift from the forward pass they compose.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import nn


@dataclass(frozen=True)
class Stage:
    """One step of the forward pass: ``run`` maps the previous stage's output to this one's, using the parameters of
    ``modules`` (and their submodules) only."""

    run: Callable
    modules: tuple[nn.Module, ...]


class Staged(nn.Module):
    """Base of the models: ``forward`` runs :meth:`stages` in order. ``prefix_cache`` (None unless
    ``--freeze-cache``) may supply, in training mode, the output of the leading stages for the batch just drawn;
    the forward pass then starts after them."""

    prefix_cache = None

    def stages(self) -> list[Stage]:
        raise NotImplementedError

    def forward(self, x):
        stages, start = self.stages(), 0
        if self.training and self.prefix_cache is not None:
            x, start = self.prefix_cache.lookup(x, stages)
        for stage in stages[start:]:
            x = stage.run(x)
        return x


@contextlib.contextmanager
def without_cache(model: nn.Module):
    """``model``'s forward computes every stage for the duration (an input that is not the batch just drawn)."""
    cache = getattr(model, "prefix_cache", None)
    model.prefix_cache = None
    try:
        yield
    finally:
        model.prefix_cache = cache


def stage_layer_counts(stages: list[Stage], layers) -> list[int]:
    """How many of ``layers`` (:func:`bench.workload.models.layers_of`) each stage holds; ValueError if a layer is in
    no stage or in two (a stage list that does not cover the model)."""
    owner = np.full(len(layers), -1)
    for s, stage in enumerate(stages):
        inside = {id(m) for top in stage.modules for m in top.modules()}
        for layer in layers:
            if id(layer.module) in inside:
                if owner[layer.index] >= 0:
                    raise ValueError(f"layer {layer.name} is in stages {owner[layer.index]} and {s}")
                owner[layer.index] = s
    if (owner < 0).any():
        raise ValueError(f"layer {layers[int(np.argmin(owner))].name} is in no stage")
    if (np.diff(owner) < 0).any():
        raise ValueError("the stages hold the layers out of their forward order")
    return np.bincount(owner, minlength=len(stages)).tolist()

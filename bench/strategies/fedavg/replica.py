"""What a client host trains a client on: the run's model, or its tier's width-reduced sub-model
(``--fl-algorithm width``, :mod:`width`). Each replica has its own parameters, staging buffers, optimizer and layer
timer, built once per host; the host switches to the client's before training it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.comm.staging import HostStaging
from bench.measure.timing import LayerTimer, make_clock
from bench.strategies.fedavg.width import sub_model_indices
from bench.workload.models import Layer, build, layers_of, load_flat
from bench.workload.optim import make_optimizer


@dataclass
class Replica:
    model: torch.nn.Module
    layers: list[Layer]
    staging: HostStaging
    optimizer: torch.optim.Optimizer
    timer: LayerTimer
    indices: np.ndarray | None = None  # a sub-model's entries in the full flat model (None: the full model)

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for layer in self.layers for p in layer.params]

    def load(self, full: np.ndarray) -> None:
        """A sub-model's parameters from the full global model (flat, float32): its leading slices."""
        load_flat(self.params, full[self.indices])


def shapes(layers: list[Layer]) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for layer in layers for p in layer.params]


def sub_models(cfg, run, widths: tuple[float, ...]) -> dict[int, tuple[torch.nn.Module, np.ndarray]]:
    """Per tier whose width ratio is below 1: its sub-model (on the run's device) and where its entries sit in the
    full model's flat vector. Every rank builds the same."""
    out = {}
    for tier, width in enumerate(widths):
        if width < 1.0:
            model = build(cfg.model, run.dataset.shape, run.dataset.classes, cfg.seed, width=width).to(run.device)
            out[tier] = (model, sub_model_indices(shapes(run.layers), shapes(layers_of(model))))
    return out


def replica_of(cfg, run, model: torch.nn.Module, indices: np.ndarray) -> Replica:
    layers = layers_of(model)
    timer = LayerTimer(layers, make_clock(run.device.type), root=model)
    return Replica(model, layers, HostStaging(layers, run.device), make_optimizer(model.parameters(), cfg), timer,
                   indices)  # fmt: skip

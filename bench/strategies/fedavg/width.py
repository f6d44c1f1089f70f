"""Width-reduced sub-models at weaker clients (``--fl-algorithm width``: static HeteroFL, Diao, Ding and Tarokh,
ICLR 2021, "HeteroFL: computation and communication efficient federated learning for heterogeneous clients",
Sec. 3; FjORD's ordered dropout, Horvath et al. 2021, trains the same nested sub-models), the baseline of
layer-wise partial training (:mod:`partial`).

A client of width ratio r trains the sub-model made of the first ceil(r C) units (channels) of every hidden layer
of width C (``models.build(..., width=r)``; inputs and classes keep their size). Its parameters are the leading
slices of the global ones: W_r = W[:ceil(r C_out), :ceil(r C_in), ...], and the server sets each entry to the mean
over the clients whose sub-model holds it, weighted by n_k (HeteroFL's rule counts each client once; with equal n_k
the two agree), keeping the global entry where none does.

A tier's ratio is ``--tier-width`` where given, else r = sqrt(p), p the share of the model's parameters it trains
under partial training (its ``--tier-frozen`` layers left out): hidden-to-hidden weights shrink with r^2, so both
methods give a weak client about the same number of parameters to train. (On resnet20 the input-side blocks hold
few parameters but most of the compute: InclusiveFL's weak tier trains 76 % of the parameters at a capacity of
0.16, so r = sqrt(0.16) = 0.4 through ``--tier-width`` matches its compute instead.) The sub-models' actual
parameter counts are recorded (``client_tiers``). HeteroFL's scaler module (outputs divided by r during training)
and static batch norm are left out: the sub-model is the plain narrow network.
"""

from __future__ import annotations

import math

import numpy as np

from bench.runtime.errors import UsageError
from bench.strategies.fedavg.algorithm import FedAvg
from bench.strategies.fedavg.protocol import Head
from bench.strategies.fedavg.tiers import too_many_frozen


def sub_model_indices(full_shapes: list[tuple[int, ...]], sub_shapes: list[tuple[int, ...]]) -> np.ndarray:
    """Where each entry of the sub-model's flat parameters (the suite's layout: parameters in order, each
    row-major) sits in the full model's flat vector: the leading slice of every parameter."""
    out, offset = [], 0
    for full, sub in zip(full_shapes, sub_shapes, strict=True):
        whole = np.arange(math.prod(full), dtype=np.int64).reshape(full)
        out.append(whole[tuple(slice(0, s) for s in sub)].reshape(-1) + offset)
        offset += math.prod(full)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


class EntrywiseMean:
    """Each entry's weighted sum over the clients whose sub-model holds it: O(model) memory."""

    def __init__(self, size: int):
        self.total = np.zeros(size)  # float64
        self.entry_weight = np.zeros(size)
        self.weight = 0.0  # every folded client's

    def reset(self) -> None:
        self.total[:] = 0.0
        self.entry_weight[:] = 0.0
        self.weight = 0.0

    def add(self, values: np.ndarray, weight: float, indices: np.ndarray) -> None:
        """Fold a sub-model (flat, the sub-model's layout) whose entries sit at ``indices`` (distinct)."""
        self.total[indices] += np.multiply(values, weight, dtype=np.float64)
        self.entry_weight[indices] += weight
        self.weight += weight

    def update(self, x: np.ndarray) -> None:
        held = self.entry_weight > 0
        x[held] = (self.total[held] / self.entry_weight[held]).astype(np.float32)


class WidthReduction(FedAvg):
    def set_model(self, offsets: np.ndarray) -> None:
        super().set_model(offsets)
        tiers = self.cfg.federated.tiers
        if tiers is not None and too_many_frozen(tiers, len(offsets) - 1, self.cfg.model):
            raise UsageError(too_many_frozen(tiers, len(offsets) - 1, self.cfg.model))
        trained = [] if tiers is None else [1 - offsets[n] / offsets[-1] for n in tiers.frozen]
        given = tiers.width if tiers is not None else ()
        self.widths = tuple(float(given[t] or np.sqrt(p)) for t, p in enumerate(trained))  # () without tiers
        self.indices: list[np.ndarray | None] = [None] * len(self.widths)
        self.sub_offsets: list[np.ndarray | None] = [None] * len(self.widths)

    def set_sub_model(self, tier: int, indices: np.ndarray, layer_sizes: list[int]) -> None:
        """Tier ``tier`` trains a sub-model: its entries' places in the full model, and its layers' sizes."""
        self.indices[tier] = indices
        self.sub_offsets[tier] = np.cumsum([0, *layer_sizes])

    def upload_offsets(self, k: int) -> np.ndarray | None:
        """Client k's uploaded layers' boundaries in its sub-model's flat layout (None: the full model's)."""
        tier = self.tier(k)
        return None if tier is None else self.sub_offsets[tier]

    def uploaded_bytes(self, k: int, layer_bytes: np.ndarray) -> int:
        offsets = self.upload_offsets(k)
        return int(layer_bytes.sum()) if offsets is None else int(offsets[-1]) * np.dtype(np.float32).itemsize

    def tier_facts(self) -> dict[int, dict]:
        """Each tier's width ratio and its sub-model's parameters, in all and per layer (the full model's where the
        ratio is 1)."""
        facts = {}
        for t, r in enumerate(self.widths):
            offsets = self.offsets if self.sub_offsets[t] is None else self.sub_offsets[t]
            facts[t] = {"width": r, "parameters": int(offsets[-1]), "layer_parameters": np.diff(offsets).tolist()}
        return facts

    def new_aggregate(self):
        return EntrywiseMean(int(self.offsets[-1]))

    def fold(self, aggregate, update: np.ndarray, head: np.ndarray, extra: np.ndarray | None = None) -> None:
        tier = self.tier(int(head[Head.CLIENT]))
        indices = self.indices[tier] if tier is not None else None
        if indices is None:
            indices = np.arange(int(self.offsets[-1]))
        aggregate.add(update[: len(indices)], self.weight(head), indices)

    def server_update(self, x: np.ndarray, aggregate, round_: int) -> None:
        aggregate.update(x)

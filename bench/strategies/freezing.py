"""Progressive layer freezing (``--freeze``; PipeTransformer's AutoFreeze: He et al., ICML 2021, "PipeTransformer:
automated elastic pipelining for distributed training of large-scale models", Sec. 3.1, Eq. 1).

As training goes on the input-side layers converge first; a frozen prefix leaves the backward pass, the optimizer and
the gradient exchange. The rule, at each freeze point T >= 1 (every ``--freeze-every`` steps):

  L_frozen(T) = min( floor(L_frozen(T-1) + alpha (L - L_frozen(T-1))),  argmin_l ||g_l(T)|| ),  L_frozen(0) = 0,

with layers numbered 1..L in the model's layer list (``models.layers_of``), L_frozen the length of the frozen prefix,
and the argmin over the active layers l in {L_frozen(T-1) + 1, ..., L} (the paper's set starts at L_frozen(T-1),
whose layer is already frozen and has no gradient; we read it as the first active layer), the lowest l on ties:
the prefix grows by at most a share alpha of the active layers (rounded down) and stops at (includes) the active
layer whose gradient norm is smallest. It never shrinks. ``--freeze fixed:K@STEP`` freezes the first K layers after
step STEP instead, for controlled experiments.

The gradient norms are those of the gradients the optimizer applies: after ring's all-reduce, the same on every
rank, so every rank takes the same decision without a message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from bench.runtime.errors import UsageError
from bench.strategies.freeze_cache import ActivationCache
from bench.workload.stages import stage_layer_counts


@dataclass(frozen=True)
class FreezeSpec:
    """``--freeze auto:ALPHA`` (every ``every`` steps) or ``fixed:K@STEP``; ``mode`` "" when off."""

    mode: str = ""
    alpha: float = 0.0
    every: int = 0
    unit: str = "layer"  # auto: what the rule counts and compares, a layer or a block of them (block_units)
    layers: int = 0  # fixed: K
    at_step: int = 0  # fixed: after this step (1-based, as the summary counts steps)

    @property
    def on(self) -> bool:
        return bool(self.mode)


def parse_freeze(spec: str, every: int, unit: str = "layer") -> FreezeSpec:
    """``--freeze``, ``--freeze-every`` and ``--freeze-unit`` as a :class:`FreezeSpec`; ValueError naming the
    accepted forms."""
    if spec in ("", "none"):
        return FreezeSpec()
    kind, _, rest = spec.partition(":")
    if kind == "fixed" and unit != "layer":
        raise ValueError("--freeze-unit applies to --freeze auto:ALPHA (fixed:K counts layers)")
    if kind == "auto" and every < 1:
        raise ValueError(f"--freeze-every must be >= 1, got {every}")
    try:
        if kind == "auto":
            alpha = float(rest)
            if 0 < alpha < 1 and every >= 1:
                return FreezeSpec("auto", alpha=alpha, every=every, unit=unit)
        elif kind == "fixed":
            k, _, step = rest.partition("@")
            if int(k) >= 1 and int(step) >= 1:
                return FreezeSpec("fixed", layers=int(k), at_step=int(step))
    except ValueError:
        pass
    raise ValueError(
        f"--freeze {spec!r}: expected auto:ALPHA with ALPHA in (0, 1) and --freeze-every N >= 1, or fixed:K@STEP "
        "(freeze the first K layers after step STEP), or none"
    )


def next_frozen(frozen: int, norms: np.ndarray, alpha: float) -> int:
    """Eq. 1: the new length of the frozen prefix from the current one and the per-layer gradient norms (all L
    layers; those of frozen layers are ignored)."""
    layers = len(norms)
    cap = math.floor(frozen + alpha * (layers - frozen))
    smallest = frozen + 1 + int(np.argmin(norms[frozen:]))  # 1-based number of the active layer with least norm
    return max(frozen, min(cap, smallest))


def block_units(names: list[str]) -> list[int]:
    """How many consecutive layers each freezing unit holds when units are blocks: a layer's block is its name up
    to its first numeric part ("blocks.3.conv1" -> "blocks.3"; "blocks.0.attn.qkv" -> "blocks.0"), or the whole
    name ("conv1", "head"), as PipeTransformer freezes whole transformer blocks."""
    keys = []
    for name in names:
        parts = name.split(".")
        cut = next((i for i, part in enumerate(parts) if part.isdigit()), len(parts) - 1)
        keys.append(".".join(parts[: cut + 1]))
    sizes: list[int] = []
    for i, key in enumerate(keys):
        if i and key == keys[i - 1]:
            sizes[-1] += 1
        else:
            sizes.append(1)
    return sizes


def layer_norms(layers) -> np.ndarray:
    """||g_l|| of each layer (all its parameters' gradients together; 0 where it has none), float64."""
    out = np.zeros(len(layers))
    for i, layer in enumerate(layers):
        grads = [p.grad for p in layer.params if p.grad is not None]
        if grads:
            out[i] = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))
    return out


def make_freezer(spec: FreezeSpec, layers, steps: int | None = None) -> Freezer | None:
    """``--freeze`` for a strategy's layers and a run of ``steps`` (None when off); UsageError for a fixed prefix
    that leaves no layer to train or an alpha whose cap is 0."""
    if not spec.on:
        return None
    if len(layers) < 2:
        raise UsageError(f"--freeze: the model has {len(layers)} layer; freezing needs one to freeze and one to train")
    if spec.mode == "fixed" and spec.layers >= len(layers):
        raise UsageError(
            f"--freeze fixed:{spec.layers}@{spec.at_step}: the model has {len(layers)} layers; leave at least "
            "one to train (`python -m bench info --model NAME` lists them)"
        )
    freezer = Freezer(spec, layers, steps)
    units = len(freezer.bounds) - 1
    if spec.mode == "auto" and math.floor(spec.alpha * units) == 0:
        raise UsageError(f"--freeze auto:{spec.alpha:g}: the cap floor(ALPHA x {units} {spec.unit}s) is 0, so "
                         "nothing would ever freeze; a larger ALPHA")  # fmt: skip
    return freezer


class Freezer:
    """The run's frozen prefix: decides at the freeze points, and stops gradients through the frozen layers."""

    cache = None  # --freeze-cache: the frozen stages' outputs (:class:`bench.strategies.freeze_cache.ActivationCache`)

    def __init__(self, spec: FreezeSpec, layers, steps: int | None = None):
        self.spec, self.layers, self.steps = spec, layers, steps  # steps: the run's; no decision after the last
        self.frozen = 0  # layers
        self.norms, self.norms_at = np.zeros(len(layers)), -1  # the last decision's gradient norms and its row
        sizes = block_units([layer.name for layer in layers]) if spec.unit == "block" else [1] * len(layers)
        self.bounds = np.cumsum([0, *sizes])  # unit u holds layers bounds[u]:bounds[u + 1]

    def due(self, step: int) -> bool:
        """After 0-based row ``step``: is this a freeze point? (Never after the run's last step: nothing would
        train with the new prefix.)"""
        if self.steps is not None and step + 1 >= self.steps:
            return False
        if self.spec.mode == "auto":
            return (step + 1) % self.spec.every == 0 and self.frozen < self.bounds[-2]  # a unit left to freeze
        return self.spec.mode == "fixed" and step + 1 == self.spec.at_step

    def decide(self, step: int) -> bool:
        """At a freeze point, after the optimizer step: the new prefix (from the gradients just applied); True if
        it grew (the caller rebuilds what depends on the active layers)."""
        return self.due(step) and self.choose(step)

    def choose(self, row: int, agree=None) -> bool:
        """The decision itself, its norms recorded in ``row``; ``agree`` turns this rank's norms into the ones
        every rank decides on (localsgd: their mean over the ranks; ring's gradients are already the same)."""
        if self.spec.mode == "fixed":
            target = self.spec.layers
        else:
            norms = layer_norms(self.layers)
            self.norms, self.norms_at = (norms if agree is None else agree(norms)), row
            squares = np.add.reduceat(self.norms**2, self.bounds[:-1])  # per unit: its layers' gradients together
            units = int(np.searchsorted(self.bounds, self.frozen))
            target = int(self.bounds[next_frozen(units, np.sqrt(squares), self.spec.alpha)])
        if target <= self.frozen:
            return False
        self.freeze_to(target)
        return True

    def declare(self, rec, cached: bool) -> None:
        """The series :meth:`record` fills (``cached``: ``--freeze-cache``; every rank declares the same series,
        whether or not it holds a cache)."""
        rec.add("freeze/frozen_layers", "layers", dtype=np.int64)
        if self.spec.mode == "auto":
            rec.add("freeze/grad_norm", "1", (len(self.layers),))
        if cached:
            rec.add("freeze/cache_hits", "samples", dtype=np.int64)
            rec.add("freeze/cache_bytes", "bytes", dtype=np.int64)

    def record(self, rec, step: int, frozen_during: int) -> None:
        """Row ``step``: the layers frozen during the step, at a freeze point the gradient norms the rule read, and
        with the cache its hits and memory."""
        rec["freeze/frozen_layers"][step] = frozen_during
        if self.norms_at == step:
            rec["freeze/grad_norm"][step] = self.norms
        if self.cache is not None:
            rec["freeze/cache_hits"][step] = self.cache.take_hits()
            rec["freeze/cache_bytes"][step] = self.cache.nbytes

    def keep_activations(self, model, loader, bound_bytes: int) -> None:
        """``--freeze-cache``: from now on, ``model``'s forward takes the frozen stages' output from a cache keyed by
        ``loader``'s samples."""
        counts = stage_layer_counts(model.stages(), self.layers)
        if self.spec.mode == "fixed" and self.spec.layers < counts[0]:
            first = ", ".join(layer.name for layer in self.layers[: counts[0]])
            spec = f"{self.spec.mode}:{self.spec.layers}@{self.spec.at_step}"
            raise UsageError(f"--freeze-cache with --freeze {spec}: the model's first stage holds {counts[0]} layers "
                             f"({first}), so no stage is ever frozen whole and nothing would be cached; freeze at "
                             f"least {counts[0]} (`python -m bench info` lists the stages)")  # fmt: skip
        self.cache = ActivationCache(counts, loader, bound_bytes)
        self.cache.frozen(self.frozen)
        model.prefix_cache = self.cache

    def freeze_to(self, count: int) -> None:
        """Freeze the first ``count`` layers: their parameters stop requiring gradients (no graph through them, no
        gradient, so no optimizer step) and lose the gradient they had."""
        self.frozen = count
        for layer in self.layers[:count]:
            for p in layer.params:
                p.requires_grad_(False)
                p.grad = None
        if self.cache is not None:
            self.cache.frozen(count)

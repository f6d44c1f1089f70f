"""Client capacity tiers (``--client-tiers``, ``--tier-frozen``, ``--tier-speed``): which logical clients are
strong, moderate or weak, which leading layers each tier does not train, and how much slower its device computes.
Pure (numpy only): parsed before MPI starts, so a malformed option fails identically on every rank.

The layer-wise partial training of InclusiveFL (Liu et al., KDD 2022, "No one left behind: inclusive federated
learning over heterogeneous devices") gives weak devices the output-side sub-model only: the input-side layers
learn similar representations across clients. Its ResNet-20 tiers leave untrained the first convolution and the
first 3 (moderate) or 6 (weak) residual blocks: in this suite's layer list (``models.layers_of``: conv1, bn1, then
conv1, bn1, conv2, bn2 per block) that is 2 + 4 x 3 = 14 and 2 + 4 x 6 = 26 leading layers, the defaults below.

The assignment is seeded: a permutation of the K clients from (seed, salt TIERS), the first round(F_strong K) are
strong, and so on (counts by largest remainder, so they sum to K; a tier given a share must get a client). Every
rank computes it; the results file records it (root attribute ``client_tiers``, with each tier's realised count).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.workload.streams import Salt, stream

TIER_NAMES = ("strong", "moderate", "weak")
DEFAULT_FROZEN = {"resnet20": {"moderate": 14, "weak": 26}}  # first conv + 3 or 6 residual blocks (InclusiveFL)


@dataclass(frozen=True)
class Tiers:
    """The tiers of a run: each tier's share of the clients, leading layers left untrained, compute-time factor."""

    fractions: tuple[float, ...]  # in TIER_NAMES order, summing to 1
    frozen: tuple[int, ...]  # leading layers the tier does not train (strong: 0)
    speed: tuple[float, ...]  # a tier's compute takes this many times as long (1: as measured)
    width: tuple[float, ...] = ()  # --tier-width: a tier's width ratio where given (0: derived from frozen)

    def assign(self, seed: int, clients: int) -> np.ndarray:
        """Each client's tier index (0 strong, 1 moderate, 2 weak), int8, length K."""
        counts = shares_of(self.fractions, clients)
        order = stream(seed, salt=Salt.TIERS).permutation(clients)
        tiers = np.empty(clients, dtype=np.int8)
        tiers[order] = np.repeat(np.arange(len(counts), dtype=np.int8), counts)
        return tiers

    def trained(self, tier: int, layers: int) -> np.ndarray:
        """Bool mask over the model's layers: those a client of ``tier`` trains (all but its leading frozen)."""
        mask = np.ones(layers, dtype=bool)
        mask[: self.frozen[tier]] = False
        return mask

    def describe(self, clients: int, facts: dict[int, dict] | None = None) -> dict:
        """Per tier name its options and realised client count, with what the algorithm made of them (``facts``,
        by tier index)."""
        facts, counts = facts or {}, shares_of(self.fractions, clients)
        return {
            name: {"fraction": f, "clients": int(k), "frozen_layers": n, "speed": s} | facts.get(t, {})
            for t, (name, f, k, n, s) in enumerate(zip(TIER_NAMES, self.fractions, counts, self.frozen, self.speed))
        }


def too_many_frozen(tiers: Tiers, layers: int, model: str) -> str:
    """Why the frozen counts do not fit a model of ``layers`` layers ("" if they do): a tier with clients that
    reads its count (no ``--tier-width``) must leave a layer to train."""
    for name, frozen, share, width in zip(TIER_NAMES, tiers.frozen, tiers.fractions, tiers.width or (0,) * 3):
        if share > 0 and not width and frozen >= layers:
            return (f"--tier-frozen {name}:{frozen} leaves no layer to train: model {model} has {layers} layers "
                    f"(`python -m bench info --model {model}` lists them)")  # fmt: skip
    return ""


def shares_of(fractions, total: int) -> np.ndarray:
    """Integer counts proportional to ``fractions`` that sum to ``total`` (largest remainder; ties: the earlier
    tier)."""
    exact = np.asarray(fractions, dtype=np.float64) * total
    counts = np.floor(exact).astype(np.int64)
    left = total - int(counts.sum())
    counts[np.argsort(-(exact - counts), kind="stable")[:left]] += 1
    return counts


def _pairs(spec: str, option: str) -> dict[str, float]:
    """``name:value,name:value`` with names from TIER_NAMES, each once."""
    out: dict[str, float] = {}
    for item in filter(None, spec.split(",")):
        name, sep, value = item.partition(":")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or name not in TIER_NAMES or number is None:
            raise ValueError(f"{option} {spec!r}: expected TIER:VALUE pairs, tiers from {', '.join(TIER_NAMES)}")
        if name in out or not np.isfinite(number):
            raise ValueError(f"{option} {spec!r}: {name} given twice" if name in out else f"{option} {spec!r}: "
                             f"{value} is not a finite number")  # fmt: skip
        out[name] = number
    return out


def parse_tiers(tiers: str, frozen: str, speed: str, model: str, width: str = "", clients: int = 0,
                uses_frozen: bool = True) -> Tiers | None:  # fmt: skip
    """The tier options as :class:`Tiers` (None without ``--client-tiers``); ValueError naming the accepted forms.
    ``uses_frozen``: the algorithm reads the frozen counts (partial training; width reduction for tiers without a
    ``--tier-width``); they default to the model's InclusiveFL tiers where the suite knows them (resnet20), another
    model needs them for every tier with clients. Otherwise every tier trains all layers (frozen 0). ``clients``:
    K, to refuse a share that gives a tier no client."""
    if not tiers:
        if frozen or speed or width:
            raise ValueError("--tier-frozen, --tier-speed and --tier-width describe the tiers of --client-tiers; "
                             "give it too")  # fmt: skip
        return None
    fractions = _pairs(tiers, "--client-tiers")
    share = [fractions.get(name, 0.0) for name in TIER_NAMES]
    if min(share) < 0 or not np.isclose(sum(share), 1.0):
        raise ValueError(f"--client-tiers {tiers!r}: the fractions must be >= 0 and sum to 1")
    if clients:
        for name, f, n in zip(TIER_NAMES, share, shares_of(share, clients)):
            if f > 0 and n == 0:
                raise ValueError(f"--client-tiers {tiers!r}: {name} gets none of the {clients} clients")
    ratios = _pairs(width, "--tier-width")
    if any(not 0 < r <= 1 for r in ratios.values()) or ratios.get("strong", 1.0) != 1.0:
        raise ValueError(f"--tier-width {width!r}: ratios in (0, 1], strong 1")
    layers = (DEFAULT_FROZEN.get(model, {}) if uses_frozen else {}) | _pairs(frozen, "--tier-frozen")
    if "strong" in layers and layers["strong"] != 0:
        raise ValueError("--tier-frozen: a strong client trains every layer (strong:0)")
    wanted = [f > 0 and uses_frozen and name not in ratios for name, f in zip(TIER_NAMES, share)]
    missing = [n for n, want in zip(TIER_NAMES[1:], wanted[1:]) if want and n not in layers]
    if missing:
        raise ValueError(
            f"--tier-frozen: how many leading layers do {' and '.join(missing)} clients leave untrained on model "
            f"{model}? e.g. --tier-frozen {missing[0]}:1 (`python -m bench info --model {model}` lists its layers)"
        )
    counts = [int(layers.get(name, 0)) for name in TIER_NAMES]
    if any(c < 0 or c != layers.get(n, 0) for c, n in zip(counts, TIER_NAMES)):
        raise ValueError(f"--tier-frozen {frozen!r}: whole numbers of leading layers, >= 0")
    factors = _pairs(speed, "--tier-speed")
    if any(f < 1 for f in factors.values()):
        raise ValueError(f"--tier-speed {speed!r}: factors >= 1 (a tier computes that many times slower)")
    return Tiers(tuple(share), tuple(counts), tuple(factors.get(name, 1.0) for name in TIER_NAMES),
                 tuple(ratios.get(name, 0.0) for name in TIER_NAMES))  # fmt: skip

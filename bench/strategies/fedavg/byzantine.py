"""Simulated Byzantine clients (``--byzantine FRACTION:ATTACK``), pure numpy, for robust aggregation studies.

In every round, round(FRACTION x m) of the m sampled clients (drawn from the stream (seed, round): every rank
computes the same set, and the results file records it per client as ``fedavg/clients/byzantine``) replace their
honest update delta = y - x by:
- ``sign-flip``: -delta (the sign-flipping attack of e.g. Allen-Zhu et al. 2021 and Karimireddy et al. 2021);
- ``gaussian:SIGMA``: noise N(0, SIGMA^2) per coordinate, from the stream (seed, round, client) (Blanchard et al.
  2017's Gaussian Byzantine workers);
- ``scale:FACTOR``: FACTOR x delta (a model-replacement style boost, Bagdasaryan et al. 2020).
They upload x + the replaced delta, with their honest sample count; everything else (timing, bytes) is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.workload.streams import Salt, stream

ATTACKS = ("sign-flip", "gaussian:SIGMA", "scale:FACTOR")


@dataclass(frozen=True)
class Attack:
    fraction: float
    kind: str  # sign-flip, gaussian, scale
    value: float = 0.0

    def attackers(self, seed: int, round_: int, sampled) -> set[int]:
        """The sampled clients that attack in ``round_``."""
        count = int(round(self.fraction * len(sampled)))
        if count == 0:
            return set()
        draw = stream(seed, round_, salt=Salt.BYZANTINE)
        chosen = draw.choice(len(sampled), size=count, replace=False)  # pragma: no mutate (replace=None is False)
        return {int(sampled[i]) for i in chosen}

    def corrupt(self, delta: np.ndarray, seed: int, round_: int, client: int) -> np.ndarray:
        """The attacker's replacement for its honest update ``delta`` (float32, same shape)."""
        if self.kind == "sign-flip":
            return -delta
        if self.kind == "scale":
            return (self.value * delta).astype(delta.dtype)
        noise = stream(seed, round_, client, salt=Salt.BYZANTINE).standard_normal(delta.size)
        return (self.value * noise).astype(delta.dtype).reshape(delta.shape)


def parse_byzantine(spec: str) -> Attack | None:
    """``--byzantine FRACTION:ATTACK`` (empty: none); ValueError naming the accepted forms otherwise."""
    if not spec:
        return None
    fraction, _, attack = spec.partition(":")
    kind, _, value = attack.partition(":")
    try:
        share = float(fraction)
        if 0 <= share <= 1:
            if kind == "sign-flip" and not value:
                return Attack(share, kind)
            if kind in ("gaussian", "scale") and np.isfinite(float(value)) and float(value) > 0:
                return Attack(share, kind, float(value))
    except ValueError:
        pass
    raise ValueError(
        f"--byzantine {spec!r}: expected FRACTION:ATTACK, FRACTION in [0, 1], ATTACK one of {', '.join(ATTACKS)} "
        "(SIGMA, FACTOR > 0), e.g. 0.2:sign-flip"
    )


def attack_check(rule, attack: Attack, seed: int, cohorts: dict[int, np.ndarray]) -> dict:
    """Attackers per round against what the aggregation ``rule`` tolerates among the round's sampled clients
    (:meth:`robust.Rule.tolerates`): the most attackers in a round, the least tolerated, and the rounds where the
    attackers outnumber it (a study may want exactly that; the summary and the report warn)."""
    attackers = {r: len(attack.attackers(seed, r, c)) for r, c in cohorts.items()}
    tolerated = {r: rule.tolerates(len(c)) for r, c in cohorts.items()}
    exceeded = sorted(r for r in cohorts if attackers[r] > tolerated[r])
    return {
        "rule": rule.name,
        "attackers_max": max(attackers.values(), default=0),
        "tolerated_min": min(tolerated.values(), default=0),
        "rounds": len(cohorts),
        "rounds_exceeded": len(exceeded),
    }

"""Split a labelled training set over partitions (ranks, or later logical clients): pure numpy, seeded.

Every rank computes the whole split from the seed and takes its own part, so no indices are communicated
and the same seed gives the same split at any rank count.
"""

from __future__ import annotations

import numpy as np

from bench.workload.streams import Salt, stream
from kernels.topology import block_bounds


def iid(n: int, parts: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A random permutation cut into ``parts`` blocks whose sizes differ by at most one."""
    perm = rng.permutation(n)
    return [np.sort(perm[slice(*block_bounds(n, parts, i))]) for i in range(parts)]


def dirichlet(
    labels: np.ndarray, parts: int, alpha: float, rng: np.random.Generator, min_size: int = 1, max_tries: int = 100
) -> list[np.ndarray]:
    """Label-skewed split: for each class c, proportions p_c ~ Dir(alpha * 1_parts) decide how its samples are
    shared (Hsu, Qi & Brown 2019, "Measuring the effects of non-identical data distribution", Sec. 3).
    Smaller ``alpha`` gives more skew. Redrawn until every part holds at least ``min_size`` samples."""
    classes = np.unique(labels)
    for _ in range(max_tries):
        buckets: list[list[np.ndarray]] = [[] for _ in range(parts)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            props = rng.dirichlet(np.full(parts, alpha))
            cuts = (np.cumsum(props)[:-1] * idx.size).astype(int)
            for p, piece in enumerate(np.split(idx, cuts)):
                buckets[p].append(piece)
        out = [np.sort(np.concatenate(b)) for b in buckets]
        if min(o.size for o in out) >= min_size:
            return out
    raise ValueError(
        f"Dirichlet(alpha={alpha}) left a partition with fewer than {min_size} samples in {max_tries} draws; "
        "raise --alpha or use fewer partitions"
    )


def shards(labels: np.ndarray, parts: int, shards_per_part: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Pathological non-IID split of McMahan et al. 2017 (Sec. 3): sort by label, cut into
    ``parts * shards_per_part`` equal shards, and give each part ``shards_per_part`` random shards."""
    order = np.argsort(labels, kind="stable")
    n_shards = parts * shards_per_part
    if n_shards > labels.size:
        raise ValueError(f"{n_shards} shards need at least that many samples, have {labels.size}")
    pieces = [order[slice(*block_bounds(labels.size, n_shards, s))] for s in range(n_shards)]
    assignment = rng.permutation(n_shards)
    return [
        np.sort(np.concatenate([pieces[s] for s in assignment[p * shards_per_part : (p + 1) * shards_per_part]]))
        for p in range(parts)
    ]


def natural(groups: np.ndarray, parts: int) -> list[np.ndarray]:
    """Use the dataset's own groups (LEAF devices): groups are dealt out in contiguous blocks, so each
    partition holds whole devices."""
    ids = np.unique(groups)
    if ids.size < parts:
        raise ValueError(f"{ids.size} natural groups cannot fill {parts} partitions")
    out = []
    for p in range(parts):
        lo, hi = block_bounds(ids.size, parts, p)
        out.append(np.flatnonzero(np.isin(groups, ids[lo:hi])))
    return out


def make(
    kind: str,
    labels: np.ndarray,
    parts: int,
    seed: int,
    *,
    alpha: float = 0.5,
    shards_per_part: int = 2,
    groups: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Dispatch on the ``--partition`` name. The generator is seeded from ``seed`` alone."""
    rng = stream(seed, salt=Salt.PARTITION)
    if kind == "iid":
        return iid(labels.size, parts, rng)
    if kind == "dirichlet":
        return dirichlet(labels, parts, alpha, rng)
    if kind == "shards":
        return shards(labels, parts, shards_per_part, rng)
    if kind == "natural":
        if groups is None:
            raise ValueError("--partition natural needs a dataset with groups")
        return natural(groups, parts)
    raise ValueError(f"unknown partition '{kind}'")


def label_skew(parts: list[np.ndarray], labels: np.ndarray) -> float:
    """Mean total-variation distance between each part's label histogram and the global one: 0 for a
    perfectly balanced split, approaching 1 when each part holds one class. Used to check that Dirichlet
    skew grows as alpha shrinks."""
    classes = np.unique(labels)
    glob = np.array([(labels == c).mean() for c in classes])
    dists = []
    for p in parts:
        if p.size == 0:
            continue
        hist = np.array([(labels[p] == c).mean() for c in classes])
        dists.append(0.5 * np.abs(hist - glob).sum())
    return float(np.mean(dists))

"""Every random stream of a run, in one place: each is a numpy generator seeded with the run's seed, the keys that
make it differ where it must (round, client, rank, step, epoch), and a salt naming the stream, so two streams
never share numbers and any of them can be replayed from the results file's config."""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Salt(IntEnum):
    SAMPLE = 0x5A  # FedAvg: which clients take part in a round (seed, round)
    DROP = 0xD0  # FedAvg: whether a sampled client drops out (seed, round, client)
    PARTITION = 0x5EED  # how training data is split over ranks or clients (seed)
    SPLIT = 0x7E57  # train/test split (seed)
    SYNTHETIC = 0xDA7A  # the synthetic dataset (seed)
    LEAF = 0x1EAF  # LEAF synthetic(alpha, beta) (seed)
    STRAGGLER = 0x510  # random slowdowns (seed, rank or client, step)
    COMPRESS = 0xC0  # random-k indices and QSGD's stochastic rounding (seed, rank or client, step, bucket)
    BYZANTINE = 0xBAD  # FedAvg: which sampled clients attack (seed, round); their Gaussian noise (seed, round, client)
    TIERS = 0x713  # FedAvg: which clients are strong, moderate or weak (seed)


def stream(seed: int, *keys: int, salt: Salt | None = None) -> np.random.Generator:
    """The generator of one stream. Streams without a salt (mini-batch order: seed, part, epoch; a FedAvg
    client's order: seed, client, round, epoch) are told apart by their number of keys."""
    entropy = [int(seed), *map(int, keys)] + ([int(salt)] if salt is not None else [])
    return np.random.default_rng(entropy)

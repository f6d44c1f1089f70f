import numpy as np
import pytest

from bench.runtime.errors import UsageError
from bench.workload.stragglers import parse_dist, parse_factors, random_factor


def test_parse_factors():
    assert parse_factors("1:3,2:1.5", 4) == {1: 3.0, 2: 1.5}
    assert parse_factors("", 4) == {}
    for bad, match in (("4:2", "out of range"), ("1:0.5", ">= 1"), ("1-3", "RANK:FACTOR")):
        with pytest.raises(UsageError, match=match):
            parse_factors(bad, 4)


def test_parse_dist():
    assert parse_dist("lognormal:0.5") == 0.5 and parse_dist("") == 0.0
    for bad in ("normal:1", "lognormal:x", "lognormal:-1"):
        with pytest.raises(UsageError):
            parse_dist(bad)


def test_random_factor_reproducible_at_least_one_and_spread_grows_with_sigma():
    draws = {s: np.array([random_factor(0, 1, t, s) for t in range(2000)]) for s in (0.0, 0.3, 1.0)}
    assert (draws[0.0] == 1).all()
    assert all((d >= 1).all() for d in draws.values())
    assert draws[0.3].mean() < draws[1.0].mean()
    # about half the draws are slowdowns (z > 0); the rest clip to 1
    assert 0.4 < (draws[1.0] > 1).mean() < 0.6
    seq = [[random_factor(5, rank, t, 0.5) for t in range(20)] for rank in (2, 2, 3)]
    assert seq[0] == seq[1] and seq[0] != seq[2]  # reproducible per (seed, rank, step); ranks independent

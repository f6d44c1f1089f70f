import numpy as np
import pytest

from bench.workload import partition


def labels(n=2000, classes=10, seed=0):
    return np.random.default_rng(seed).integers(0, classes, n)


@pytest.mark.parametrize("kind", ["iid", "dirichlet", "shards"])
@pytest.mark.parametrize("parts", [1, 3, 8])
def test_partitions_are_disjoint_and_cover(kind, parts):
    y = labels()
    out = partition.make(kind, y, parts, seed=1, alpha=0.5)
    allidx = np.concatenate(out)
    assert len(out) == parts
    assert allidx.size == y.size and np.unique(allidx).size == y.size


def test_iid_sizes_balanced():
    sizes = [p.size for p in partition.make("iid", labels(1001), 8, seed=0)]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 1001


def test_deterministic_from_seed():
    y = labels()
    for kind in ("iid", "dirichlet", "shards"):
        a = partition.make(kind, y, 5, seed=7)
        b = partition.make(kind, y, 5, seed=7)
        c = partition.make(kind, y, 5, seed=8)
        assert all(np.array_equal(x, z) for x, z in zip(a, b))
        assert not all(np.array_equal(x, z) for x, z in zip(a, c))


def test_dirichlet_skew_grows_as_alpha_shrinks():
    y = labels(5000)
    skews = [partition.label_skew(partition.make("dirichlet", y, 10, seed=3, alpha=a), y) for a in (100, 1, 0.1)]
    assert skews[0] < skews[1] < skews[2]
    assert skews[0] < 0.1 and skews[2] > 0.5


def test_shards_give_few_labels_per_part():
    y = np.repeat(np.arange(10), 100)
    for p in partition.make("shards", y, 10, seed=0, shards_per_part=2):
        assert np.unique(y[p]).size <= 2


def test_natural_keeps_groups_whole():
    groups = np.repeat(np.arange(6), [5, 3, 7, 2, 9, 4])
    out = partition.natural(groups, 3)
    for p in out:
        for g in np.unique(groups[p]):
            assert np.isin(np.flatnonzero(groups == g), p).all()
    with pytest.raises(ValueError):
        partition.natural(groups, 7)


def test_natural_partitions_deal_whole_groups_in_blocks():
    """Five devices (groups 10, 20, 30, 40, 50, unsorted samples) over 2 parts: devices 10-30 and 40-50, every
    sample of a device in its part; as many parts as devices works, more is one error naming both."""
    from bench.workload.partition import natural

    groups = np.array([30, 10, 50, 20, 40, 10, 30, 50])
    parts = natural(groups, 2)
    assert [p.tolist() for p in parts] == [[0, 1, 3, 5, 6], [2, 4, 7]]
    assert [p.tolist() for p in natural(groups, 5)] == [[1, 5], [3], [0, 6], [4], [2, 7]]
    with pytest.raises(ValueError, match="5 natural groups cannot fill 6 partitions"):
        natural(groups, 6)


def test_label_skew_is_the_mean_total_variation_over_non_empty_parts():
    """Labels (0, 1, 0, 1): part (0, 1) matches the global histogram (TV 0), part (2) holds one class (TV 0.5), an
    empty part in between is left out: 0.25."""
    labels = np.array([0, 1, 0, 1])
    assert partition.label_skew([np.array([0, 1]), np.array([], int), np.array([2])], labels) == 0.25


def test_make_dispatches_with_the_documented_defaults():
    """--partition by name, seeded from the seed alone: Dirichlet's alpha defaults to 0.5, shards to 2 per part
    (40 samples over 4 parts: 8 shards of 5, 10 samples each); natural needs groups."""
    labels = np.repeat(np.arange(4), 10)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(partition.make("dirichlet", labels, 3, 1), partition.make("dirichlet", labels, 3, 1, alpha=0.5))
    )
    assert [p.size for p in partition.make("shards", labels, 4, 1)] == [10, 10, 10, 10]
    groups = np.array([7, 7, 8, 9] * 10)
    assert [p.tolist() for p in partition.make("natural", labels, 3, 0, groups=groups)] == [
        p.tolist() for p in partition.natural(groups, 3)]  # fmt: skip
    with pytest.raises(ValueError, match="^--partition natural needs a dataset with groups$"):
        partition.make("natural", labels, 3, 0)
    with pytest.raises(ValueError, match="unknown partition 'zipf'"):
        partition.make("zipf", labels, 3, 0)


def test_dirichlet_needs_at_least_one_sample_per_part():
    """Two samples of one class over two parts: a draw either leaves a part empty (p_1 < 0.5) or gives one each,
    which is enough (at least 1); three parts can never all be filled: one error naming the limits."""
    labels = np.zeros(2, int)
    parts = partition.dirichlet(labels, 2, 0.5, np.random.default_rng(0))
    assert [p.size for p in parts] == [1, 1]
    with pytest.raises(ValueError) as err:
        partition.dirichlet(labels, 3, 0.5, np.random.default_rng(0))
    assert str(err.value) == (
        "Dirichlet(alpha=0.5) left a partition with fewer than 1 samples in 100 draws; raise --alpha or use fewer "
        "partitions"
    )

"""The parameter-server shard map (pure): every element owned exactly once, balanced by bytes, small layers whole."""

import numpy as np
import pytest

from kernels.shard_map import shard_map

CASES = [
    ([100, 10, 1000, 10], 1),
    ([100, 10, 1000, 10], 2),
    ([100, 10, 1000, 10], 3),
    ([5, 5, 5, 5, 5, 5], 3),
    ([1_600_000, 200, 10, 3000, 10], 4),  # one dominant layer: split in chunks
    ([7], 7),
    ([3, 1, 1, 2], 7),
]


@pytest.mark.parametrize("numels,servers", CASES)
def test_pieces_tile_every_layer_once(numels, servers):
    smap = shard_map(numels, servers)
    for layer, n in enumerate(numels):
        pieces = sorted(smap.pieces_of_layer(layer), key=lambda p: p.lo)
        assert pieces[0].lo == 0 and pieces[-1].hi == n
        assert all(a.hi == b.lo for a, b in zip(pieces, pieces[1:]))
    assert sum(p.numel for p in smap.pieces) == sum(numels)
    assert [p.index for p in smap.pieces] == list(range(len(smap.pieces)))
    # layer order visits servers in non-decreasing order (the deadlock-freedom argument)
    order = [p.server for p in smap.pieces]
    assert order == sorted(order)
    assert all(n > 0 for n in smap.server_numel())


@pytest.mark.parametrize("numels,servers", CASES)
def test_balanced_by_bytes(numels, servers):
    smap = shard_map(numels, servers, tolerance=0.1)
    target = sum(numels) / servers
    assert max(smap.server_numel()) <= 1.2 * target + 1


def test_small_layers_stay_whole_when_that_balances():
    smap = shard_map([5, 5, 5, 5, 5, 5], 3)
    assert smap.bounds == (0, 10, 20, 30)
    assert all(p.lo == 0 and p.hi == 5 for p in smap.pieces)


def test_dominant_layer_is_split():
    smap = shard_map([1_600_000, 200, 10], 4)
    assert len(smap.pieces_of_layer(0)) == 4
    assert {p.server for p in smap.pieces_of_layer(0)} == {0, 1, 2, 3}


def test_too_few_parameters_is_an_error():
    with pytest.raises(ValueError, match="cannot be spread"):
        shard_map([2, 1], 4)
    with pytest.raises(ValueError):
        shard_map([2], 0)


def test_whole_tensors_stay_on_one_server():
    """LARS/LAMB on servers: every cut on a tensor edge (here a dominant tensor the balanced map would split),
    nearest the ideal point; too few tensors for the servers is one clear error."""
    tensors = [100, 10, 5000, 10, 200, 3]  # layers: (100, 10), (5000, 10), (200, 3)
    layers = [110, 5010, 203]
    edges = list(np.cumsum([0] + tensors))
    for servers in (2, 3, 4):
        smap = shard_map(layers, servers, whole=tensors)
        assert all(b in edges for b in smap.bounds), smap.bounds
        assert len(set(smap.bounds)) == servers + 1  # no server empty
    assert shard_map(layers, 2, whole=tensors).bounds == (0, 5110, 5323)  # the edge nearest 2661.5 above 0
    assert shard_map(layers, 2).bounds != (0, 5110, 5323)  # the balanced map splits the dominant tensor
    with pytest.raises(ValueError, match="6 whole parameter tensors cannot be spread over 7 servers"):
        shard_map(layers, 7, whole=tensors)


def test_whole_tensor_cuts_leave_every_later_server_a_tensor():
    """Tensors (1, 1, 1, 97) on 4 servers: the ideal points 25, 50, 75 all pull right, but each cut may only take
    an edge that leaves a tensor for every later server: (0, 1, 2, 3, 100), exactly as many tensors as servers."""
    assert shard_map([100], 4, whole=[1, 1, 1, 97]).bounds == (0, 1, 2, 3, 100)
    assert shard_map([100], 2, whole=[1, 1, 1, 97]).bounds == (0, 3, 100)  # nearest 50 among 1, 2, 3
    with pytest.raises(ValueError, match="3 whole parameter tensors cannot be spread over 4 servers"):
        shard_map([100], 4, whole=[2, 1, 97])
    with pytest.raises(ValueError, match="the tensors hold 99 parameters, the layers 100"):
        shard_map([100], 2, whole=[2, 97])


def test_ranges_pieces_and_record_by_hand():
    smap = shard_map([5, 5, 5, 5, 5, 5], 3)
    assert smap.n_servers == 3 and [smap.server_range(s) for s in range(3)] == [(0, 10), (10, 20), (20, 30)]
    assert [(p.layer, p.offset) for p in smap.pieces_of_server(1)] == [(2, 10), (3, 15)]
    assert smap.describe() == {
        "bounds": [0, 10, 20, 30],
        "pieces": [[layer, 0, 5, layer // 2] for layer in range(6)],
        "columns": ["layer", "lo", "hi", "server"],
    }
    split = shard_map([12, 3], 3)  # ideal cuts 5 and 10 inside the first layer (edge 12 is 2 away: > 1.5)
    assert split.bounds == (0, 5, 10, 15) and [(p.layer, p.lo, p.hi, p.server) for p in split.pieces] == [
        (0, 0, 5, 0), (0, 5, 10, 1), (0, 10, 12, 2), (1, 0, 3, 2)]  # fmt: skip


def test_balanced_cuts_snap_within_the_tolerance_only():
    """Ideal cuts k N / S move to the nearest layer edge when it lies within tolerance x N / S (inclusive):
    (18, 22) on 2 servers: 20 -> 18 (2 <= 0.1 x 20); (10, 10, 10): 15 stays (edges 5 away > 1.5). Snapping must not
    empty a server: (4, 8) on 3 with tolerance 1: the second ideal 8 is as near the used edge 4 as the end 12, so
    it stays 8; (1, 1, 10): the second would snap to the end 12 and stays 8."""
    assert shard_map([18, 22], 2).bounds == (0, 18, 40)
    assert shard_map([10, 10, 10], 2).bounds == (0, 15, 30)
    assert shard_map([4, 8], 3, tolerance=1.0).bounds == (0, 4, 8, 12)
    assert shard_map([1, 1, 10], 3, tolerance=1.0).bounds == (0, 2, 8, 12)


def test_a_cut_that_would_repeat_the_last_moves_one_past_it():
    """(9, 3) on 4 servers, tolerance 1: the cuts 3, then 9 (the edge nearest 6), then the edge nearest 9 is 9
    again and its ideal too, so the cut moves to 10: no server is left empty."""
    assert shard_map([9, 3], 4, tolerance=1.0).bounds == (0, 3, 9, 10, 12)
    with pytest.raises(ValueError, match="^need at least one server, got 0$"):
        shard_map([2], 0)

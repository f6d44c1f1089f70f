"""The two-level cost of the all-reduce kernels (kernels/cost.py) on hand-computed cases, its one-node case against
the classic ring and doubling formulas (Thakur, Rabenseifner & Gropp 2005), and the calibration's two-point fit."""

import math

import pytest

from bench.comm.calibrate import fit
from kernels.cost import FREE, Link, cheaper, doubling_rounds, flat_seconds, hierarchical_seconds

INSIDE = Link(1e-6, 1e-10)  # 1 us, 10 GB/s
ACROSS = Link(1e-5, 1e-9)  # 10 us, 1 GB/s
MIB8 = 8 * 2**20


def test_flat_ring_on_two_nodes_of_four_crosses_in_every_step():
    # 2 (p - 1) (alpha_e + n / p beta_e), p = 8
    assert flat_seconds(MIB8, 2, 4, INSIDE, ACROSS) == pytest.approx(14 * (1e-5 + MIB8 / 8 * 1e-9))


def test_hierarchical_large_is_two_inside_phases_and_node_rings_sharing_the_link():
    inside = 2 * 3 * (1e-6 + MIB8 / 4 * 1e-10)  # reduce-scatter + all-gather of n / K pieces, K = 4
    across = 2 * 1 * (1e-5 + MIB8 / 2 * 1e-9)  # 4 chunk rings of N = 2 through one link: n / N per step
    assert hierarchical_seconds(MIB8, 2, 4, INSIDE, ACROSS) == pytest.approx(inside + across)


def test_small_buffers_flat_doubling_against_the_leaders_path():
    # flat: log2 8 = 3 rounds, the last across with all 4 ranks of a node sending 8 B at once
    flat = 1 * (1e-5 + 4 * 8 * 1e-9) + 2 * (1e-6 + 8 * 1e-10)
    assert flat_seconds(8, 2, 4, INSIDE, ACROSS) == pytest.approx(flat)
    # hierarchical: 3 sends to the first rank and 3 back, one doubling round between the 2 first ranks
    hier = 6 * (1e-6 + 8 * 1e-10) + 1 * (1e-5 + 8 * 1e-9)
    assert hierarchical_seconds(8, 2, 4, INSIDE, ACROSS) == pytest.approx(hier)
    assert cheaper(8, 2, 4, INSIDE, ACROSS) == "flat" and cheaper(MIB8, 2, 4, INSIDE, ACROSS) == "hierarchical"


@pytest.mark.parametrize("p", [2, 3, 4, 8])
def test_one_node_is_the_classic_single_link_model(p):
    link = Link(2e-6, 3e-10)
    n = 4 * 2**20
    assert flat_seconds(n, 1, p, link, ACROSS) == pytest.approx(2 * (p - 1) * (2e-6 + n / p * 3e-10))
    steps = int(math.log2(p)) if p & (p - 1) == 0 else int(math.log2(p)) + 2
    assert flat_seconds(64, 1, p, link, ACROSS) == pytest.approx(steps * (2e-6 + 64 * 3e-10))


def test_nothing_to_reduce_costs_nothing_and_a_free_inside_link_leaves_the_network_time():
    assert flat_seconds(MIB8, 1, 1, INSIDE, ACROSS) == 0 == hierarchical_seconds(0, 2, 4, INSIDE, ACROSS)
    assert flat_seconds(0, 2, 4, INSIDE, ACROSS) == 0
    assert hierarchical_seconds(MIB8, 2, 4, FREE, ACROSS) == pytest.approx(2 * (1e-5 + MIB8 / 2 * 1e-9))


def test_chunks_below_the_switch_take_doubling_between_nodes():
    n = 192 * 1024  # chunks of 96 KiB (< 128 KiB) among N = 4 nodes: doubling, 2 rounds of the whole n per link
    expect = 2 * 1 * (1e-6 + n / 2 * 1e-10) + 2 * (1e-5 + n * 1e-9)
    assert hierarchical_seconds(n, 4, 2, INSIDE, ACROSS) == pytest.approx(expect)


def test_one_rank_per_node_and_one_node_of_several():
    n = 8 * 2**20
    # 2 nodes of 1 rank: the flat ring's 2 steps and the hierarchical kernel's node ring are the same messages
    assert flat_seconds(n, 2, 1, INSIDE, ACROSS) == pytest.approx(2 * (1e-5 + n / 2 * 1e-9))
    assert hierarchical_seconds(n, 2, 1, INSIDE, ACROSS) == pytest.approx(2 * (1e-5 + n / 2 * 1e-9))
    assert flat_seconds(8, 2, 1, INSIDE, ACROSS) == pytest.approx(1e-5 + 8 * 1e-9)  # one doubling round, across
    # one node of 4: the hierarchical kernel is its reduce-scatter and all-gather, nothing across
    assert hierarchical_seconds(n, 1, 4, INSIDE, ACROSS) == pytest.approx(6 * (1e-6 + n / 4 * 1e-10))
    # 4 nodes of 2, 4 MiB chunks: a ring of 4 between nodes, 2 (N - 1) steps of n / N through each link
    assert hierarchical_seconds(n, 4, 2, INSIDE, ACROSS) == pytest.approx(
        2 * (1e-6 + n / 2 * 1e-10) + 6 * (1e-5 + n / 4 * 1e-9)
    )


def test_the_switch_size_is_the_kernels_own():
    small = 128 * 1024  # at the switch the kernels take their large path: so does the model
    assert hierarchical_seconds(small, 2, 2, INSIDE, ACROSS) == pytest.approx(
        2 * (1e-6 + small / 2 * 1e-10) + 1 * (1e-5 + small * 1e-9)  # 64 KiB chunks: doubling between the 2 nodes
    )
    # 1 KiB on 2 nodes of 2: below the default switch flat doubling wins (13.15 us: one round across with both
    # ranks sending, one inside) over the leaders' path (13.23 us); with the switch at 1 KiB the flat ring's 6
    # steps across (61.5 us) lose to the large hierarchical path (13.13 us)
    assert cheaper(1024, 2, 2, INSIDE, ACROSS) == "flat"
    assert cheaper(1024, 2, 2, INSIDE, ACROSS, small=1024) == "hierarchical"
    assert flat_seconds(1024, 2, 2, INSIDE, ACROSS, small=1024) == pytest.approx(6 * (1e-5 + 256 * 1e-9))
    # 2 nodes of 4, switch at 1 KiB: the large hierarchical path (17.2 us) beats the flat ring (141.8 us); priced
    # with the default switch, flat doubling (16.3 us) would have won
    assert cheaper(1024, 2, 4, INSIDE, ACROSS, small=1024) == "hierarchical"
    # 8 nodes of 1, switch at 1 KiB: both kernels are the same ring of 8 (141.8 us): a tie is flat
    assert cheaper(1024, 8, 1, INSIDE, ACROSS, small=1024) == "flat"
    # 4 KiB chunks over the 1 KiB switch: a ring of 2 between the nodes, not doubling
    assert hierarchical_seconds(8192, 2, 2, INSIDE, ACROSS, small=1024) == pytest.approx(
        2 * (1e-6 + 4096 * 1e-10) + 2 * (1e-5 + 4096 * 1e-9)
    )


def test_a_link_with_a_known_shared_part_charges_only_that_part_per_extra_sender():
    link = Link(1e-5, 2e-9, shared_beta=0.5e-9)  # 2 ns/B alone, of which 0.5 ns/B on the wire
    assert link.time(1000, 4) == pytest.approx(1e-5 + 1000 * 2e-9 + 3 * 1000 * 0.5e-9)
    assert Link(1e-5, 2e-9).time(1000, 4) == pytest.approx(1e-5 + 4 * 1000 * 2e-9)  # unknown: all of it shared
    n = MIB8  # 2 nodes of 4: each ring step, 4 chunk messages of n / 8 bytes share the link
    assert hierarchical_seconds(n, 2, 4, FREE, link) == pytest.approx(2 * (1e-5 + n / 8 * 2e-9 + 3 * n / 8 * 0.5e-9))


def test_doubling_on_nodes_of_three_crosses_in_every_round():
    """p = 6 as 2 nodes of 3 (positions 0-2, 3-5): recursive doubling folds 0 -> 1 and 2 -> 3, exchanges 1 <-> 3 and
    4 <-> 5, then 1 <-> 4 and 3 <-> 5, and hands back 1 -> 0 and 3 -> 2: each of the 4 rounds sends one message
    across (2 -> 3, 1 <-> 3, 1 <-> 4, 3 -> 2) beside one inside, so 4 (alpha_e + n beta_e), not log2 N = 1 round."""
    assert flat_seconds(8, 2, 3, INSIDE, ACROSS) == pytest.approx(4 * (1e-5 + 8 * 1e-9))
    leaders = 2 * 2 * (1e-6 + 8 * 1e-10) + 1 * (1e-5 + 8 * 1e-9)  # 2 to the first rank and back, 1 round across
    assert hierarchical_seconds(8, 2, 3, INSIDE, ACROSS) == pytest.approx(leaders)
    assert cheaper(8, 2, 3, INSIDE, ACROSS) == "hierarchical"


def test_doubling_rounds_follow_the_kernels_schedule():
    """6 positions on nodes (0, 0, 1, 1, 1, 1): the fold 0 -> 1, 2 -> 3 stays inside; the exchanges 1 <-> 3, 4 <-> 5
    and 1 <-> 4, 3 <-> 5 each send one message from either node across beside inside ones; the hand-back stays
    inside. One position, or none: no rounds."""
    assert doubling_rounds((0, 0, 1, 1, 1, 1)) == [(0, True), (1, True), (1, True), (0, True)]
    assert doubling_rounds((0, 0, 1, 1)) == [(0, True), (2, False)]  # both ranks of a node send across at once
    assert doubling_rounds((0,)) == [] and doubling_rounds(()) == []


def test_a_ring_step_takes_its_slowest_message():
    slow_inside, fast_across = Link(1e-5, 1e-9), Link(1e-6, 1e-10)  # e.g. a noisy calibration on one host
    assert flat_seconds(MIB8, 2, 4, slow_inside, fast_across) == pytest.approx(14 * (1e-5 + MIB8 / 8 * 1e-9))
    # one rank per node: every doubling message crosses, none is priced on the (slower) inside link
    assert flat_seconds(8, 4, 1, slow_inside, fast_across) == pytest.approx(2 * (1e-6 + 8 * 1e-10))


def test_calibration_fit_goes_through_both_points_and_never_negative():
    link = fit((8, 10e-6 + 8e-9), (2**20, 10e-6 + 2**20 * 1e-9))
    assert link.alpha == pytest.approx(10e-6) and link.beta == pytest.approx(1e-9)
    noisy = fit((8, 5e-6), (2**20, 4e-6))  # the large message measured faster: no negative bandwidth
    assert noisy.beta == 0.0 and noisy.alpha == pytest.approx(5e-6)

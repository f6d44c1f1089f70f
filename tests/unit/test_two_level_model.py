"""The two-level model fitted from a ``micro --op links`` file (written by the micro command's own writer with times
made from known links) and its table, against the flat and hierarchical all-reduce priced by hand."""

import numpy as np
import pytest

from analysis.data.load import load
from analysis.models.two_level import fit_links
from analysis.views.nodes import two_level_table
from bench.micro.harness import write

SIZES = [8, 1024, 65536, 1 << 20, 8 << 20]
INSIDE = (2e-6, 2e-10)  # alpha s, beta s/byte (5 GB/s)
ACROSS = (50e-6, 8e-9)  # 1 Gb/s


def links_file(path, per_node: int = 4, emulate: str = "50,1", sizes=SIZES, samples: int = 3):
    links = (("inside", INSIDE), ("across", ACROSS))
    data = {name: [[a + n * b] * samples for n in sizes] for name, (a, b) in links}
    config = {"op": "links", "ranks_per_node": per_node, "emulate_link": emulate}
    write(str(path), "links", sizes, data, 8, {"config": config})
    return load(path)


def test_fit_recovers_both_links(tmp_path):
    fit = fit_links(links_file(tmp_path / "l.h5"))
    assert (fit.inside.alpha, fit.inside.beta) == pytest.approx(INSIDE, rel=1e-6)
    assert (fit.across.alpha, fit.across.beta) == pytest.approx(ACROSS, rel=1e-6)
    assert fit.per_node == 4 and "emulated link 50,1" in fit.source


def test_table_prices_flat_and_hierarchical_as_by_hand(tmp_path):
    table = two_level_table([links_file(tmp_path / "l.h5")])
    row = next(r for r in table.rows if r[0] == 16 << 20 and r[1] == 2)
    n = 16 << 20  # 2 nodes of 4: flat ring 2 (p - 1) steps across; hierarchical: 2 (K - 1) inside + 2 (N - 1) across
    flat = 14 * (50e-6 + n / 8 * 8e-9)
    hier = 6 * (2e-6 + n / 4 * 2e-10) + 2 * (50e-6 + n / 2 * 8e-9)
    assert row[2:6] == [4, 8, pytest.approx(flat), pytest.approx(hier)]
    assert row[6] == pytest.approx(hier / flat) and row[7] == "hierarchical"
    small = next(r for r in table.rows if r[0] == 8)
    # 8 B: flat doubling 3 rounds, 1 across with 4 senders; leaders: 3 + 3 inside, 1 across
    assert small[4] == pytest.approx((50e-6 + 4 * 8 * 8e-9) + 2 * (2e-6 + 8 * 2e-10))
    assert small[5] == pytest.approx(6 * (2e-6 + 8 * 2e-10) + (50e-6 + 8 * 8e-9)) and small[7] == "flat"
    weak = [r for r in table.rows if r[0] == 16 << 20]
    assert [r[3] for r in weak] == [8, 64, 512, 4096] and "emulated link 50,1" in table.notes[0]


def test_two_sizes_fit_one_does_not_and_the_source_says_what_was_measured(tmp_path):
    two = fit_links(links_file(tmp_path / "two.h5", per_node=0, emulate="", sizes=[8, 4096], samples=1))
    assert two is not None and two.per_node == 2 and two.source.endswith(" (8 ranks)"), two.source
    assert two.across.alpha == pytest.approx(ACROSS[0], rel=1e-6)
    assert fit_links(links_file(tmp_path / "one.h5", sizes=[4096])) is None


def test_the_recorded_layout_gives_the_ranks_per_node(tmp_path):
    links = {"inside": [[1e-6]] * 2, "across": [[1e-5]] * 2}
    write(
        str(tmp_path / "n.h5"),
        "links",
        [8, 4096],
        links,
        7,
        {"config": {"ranks_per_node": 0}, "nodes": [0, 0, 0, 1, 1, 1, 2]},
    )
    assert fit_links(load(tmp_path / "n.h5")).per_node == 3  # the machine's nodes, recorded: the largest has 3


def test_no_links_file_no_table(tmp_path):
    write(str(tmp_path / "m.h5"), "latency", SIZES, {"ours": [[1e-6]] * len(SIZES)}, 2, {})
    assert two_level_table([load(tmp_path / "m.h5")]).empty


def test_a_links_file_alone_is_enough_for_model_and_report(tmp_path, capsys):
    from analysis.__main__ import main

    links_file(tmp_path / "l.h5")
    assert main(["model", str(tmp_path / "l.h5")]) == 0
    assert "Two-level cost model" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "l.h5"), "-o", str(tmp_path / "rep")]) == 0
    assert "Two-level cost model" in (tmp_path / "rep" / "report.md").read_text()
    assert main(["tables", str(tmp_path / "l.h5")]) == 1  # tables are of training runs: none here


def fake_run(strategy="ring", exchange="allreduce", allreduce="flat", chosen=None, local_steps=None, wire=None):
    """A ring-like run on 2 nodes of 2 ranks with two buckets: layer 1 (400 B, below the 128 KiB switch) first,
    then layer 0 (4 MB)."""
    import types

    info = {"buckets": [[1], [0]]} | ({"allreduce_chosen": chosen} if chosen else {})
    info |= {"compress_wire": wire} if wire else {}
    config = {"strategy": strategy, "allreduce": allreduce} | ({"local_steps": local_steps} if local_steps else {})
    attrs = {"exchange": exchange, "nodes": [0, 0, 1, 1], "strategy_info": info}
    data = {"layers/bytes": np.array([4_000_000.0, 400.0])}
    return types.SimpleNamespace(attrs=attrs, config=config, data=data, world_size=4)


def test_a_runs_step_is_priced_bucket_by_bucket_on_its_own_layout_and_kernels():
    """By hand (module docstring of kernels/cost.py), inside 1 us + 0.1 ns/B, across 50 us + 10 ns/B, 2 nodes x 2:
    flat, 4 MB: 6 ring steps of 1 MB, each its slowest message (across): 6 (50e-6 + 1e-2) = 0.0603 s; 400 B: recursive
    doubling, one round inside (1e-6 + 4e-8) and one across with both ranks of a node sending (50e-6 + 2 x 4e-6):
    5.904e-5 s. Hierarchical, 4 MB: 2 (1e-6 + 2e-4) inside + 2 rings of 2 chunks of 1 MB through each node's link,
    2 (50e-6 + 2 x 1e-2) = 0.040502 s; 400 B: to the first rank and back 2 (1e-6 + 4e-8), one doubling step
    across (50e-6 + 4e-6): 5.608e-5 s. localsgd divides by tau; auto takes each bucket's recorded kernel.
    Mutations caught: a kernel for the whole run instead of per bucket, the buckets' bytes swapped with their
    kernels, tau not applied, a compressed or parameter-server run priced as a dense all-reduce."""
    from analysis.models.costmodel import AlgorithmFit
    from analysis.models.two_level import TwoLevelFit, step_comm_seconds

    rest = (0.0, 0.0, 0.0, 0.0, 0, 0.0)  # standard errors, size range, points, error: not used in pricing
    fit = TwoLevelFit(AlgorithmFit(1e-6, 1e-10, *rest), AlgorithmFit(50e-6, 1e-8, *rest), "hand", 2)
    flat, hier = 0.0603 + 5.904e-5, 0.040502 + 5.608e-5
    assert step_comm_seconds(fake_run(), fit) == pytest.approx(flat, rel=1e-9)
    assert step_comm_seconds(fake_run(allreduce="hierarchical"), fit) == pytest.approx(hier, rel=1e-9)
    mixed = fake_run(allreduce="auto", chosen=["hierarchical", "flat"])
    assert step_comm_seconds(mixed, fit) == pytest.approx(5.608e-5 + 0.0603, rel=1e-9)
    periodic = fake_run("localsgd", "periodic", local_steps=4)
    assert step_comm_seconds(periodic, fit) == pytest.approx(flat / 4, rel=1e-9)  # a file without localsgd/synced
    periodic.data["localsgd/synced"] = np.array([[1, 0, 0, 0, 1, 0, 0, 1]] * 4)  # warm-up, tau and the last step
    assert step_comm_seconds(periodic, fit) == pytest.approx(flat * 3 / 8, rel=1e-9)
    assert step_comm_seconds(fake_run(allreduce="auto", chosen=["flat"]), fit) is None  # choices for 1 of 2
    assert step_comm_seconds(fake_run(wire=[{"allreduce_bytes": [200]}]), fit) is None
    assert step_comm_seconds(fake_run("ps", "parameter_server"), fit) is None
    assert step_comm_seconds(fake_run("ddp"), fit) is None

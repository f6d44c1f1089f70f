"""A strategy's facts are declared once (bench.strategies.REGISTRY), recorded in the results file, and read back by
analysis from the file. The references: analysis's compatibility table for files without the facts (written by
hand, apart from the registry), and hand-written expectations per option."""

from __future__ import annotations

import pytest

from analysis.data import facts as read
from analysis.data.facts import BEFORE_FACTS
from analysis.stats.metrics import strategy_label
from bench.config import build
from bench.runtime.errors import UsageError
from bench.strategies import NAMES
from bench.strategies.fedavg.options import cohort_size, parse_selection
from tests.analysis_fixtures import ring_run


@pytest.mark.parametrize("name", NAMES)
def test_recorded_facts_read_as_the_compatibility_table_reads_old_files(name):
    """New files (facts recorded) and old ones (the table) must give a strategy the same reading. Mutations
    caught: any field of a Facts entry changed (ps computing 'all', ddp not overlapped, localsgd 'allreduce')."""
    attrs = build({"strategy": name}).strategy_attributes()
    unit, exchange, computing, overlapped, options = BEFORE_FACTS[name]
    assert (attrs["row_unit"], attrs["exchange"], attrs["computing"]) == (unit, exchange, computing)
    assert attrs["overlapped"] is overlapped
    assert set(options) <= set(attrs["options"])


@pytest.mark.parametrize(
    ("given", "schedule", "overlapped", "takes_mode"),
    [
        ({"strategy": "ring"}, "lockstep", False, False),
        ({"strategy": "ring", "overlap": True}, "lockstep", True, False),
        ({"strategy": "ps"}, "lockstep", False, True),
        ({"strategy": "ps", "ps_mode": "async"}, "decoupled", False, True),
        ({"strategy": "ps", "ps_mode": "ssp"}, "decoupled", False, False),  # is ssp, whose mode is fixed
        ({"strategy": "ssp"}, "decoupled", False, False),
        ({"strategy": "fedavg"}, "rounds", False, False),
        ({"strategy": "ddp"}, "lockstep", True, False),
    ],
)
def test_schedule_and_overlap_follow_the_options(given, schedule, overlapped, takes_mode):
    attrs = build(given).strategy_attributes()
    assert (attrs["schedule"], attrs["overlapped"], "ps_mode" in attrs["options"]) == (schedule, overlapped, takes_mode)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"strategy": "ddp", "compress": "fp16"}, "--compress applies to --strategy ring, localsgd, ps, ssp, fedavg"),
        ({"strategy": "fedavg", "steps": 5}, "--steps applies to --strategy ring, localsgd, ps, ssp, ddp"),
        ({"strategy": "ps", "staleness": 1}, "--staleness applies to --strategy ssp"),
        ({"strategy": "localsgd", "bucket_mb": 1.0, "overlap": True}, "--overlap applies to --strategy ring, ps"),
        ({"strategy": "ps", "compress": "powersgd:2"}, "needs all-reduces of its factors: ring or localsgd"),
        ({"strategy": "ps", "ps_mode": "async", "overlap": True}, "--overlap with --strategy ps needs --ps-mode sync"),
    ],
)
def test_options_a_strategy_does_not_take_are_refused_naming_where_they_apply(given, message):
    with pytest.raises(UsageError, match=message):
        build(given)


def test_analysis_reads_the_facts_from_the_file_not_from_the_name(tmp_path):
    """A file that records its facts is read by them even where its strategy's name says otherwise (a new
    strategy needs no entry in analysis). Mutation caught: any reader falling back to the table first."""
    attrs = {
        "schedule": "decoupled",
        "row_unit": "round",
        "exchange": "parameter_server",
        "computing": "workers",
        "overlapped": True,
        "options": ["compress", "staleness"],
    }
    run = ring_run(tmp_path / "new.h5", 2, 0.1, cfg={"compress": "fp16", "overlap": False}, attrs=attrs)
    got = (read.schedule(run), read.row_unit(run), read.exchange(run), read.computing(run), read.overlapped(run))
    assert got == ("decoupled", "round", "parameter_server", "workers", True)
    assert read.applies(run, "staleness") and not read.applies(run, "bucket_mb")
    assert strategy_label(run) == "ring --compress fp16"


def test_old_files_read_their_facts_from_the_compatibility_table(tmp_path):
    run = ring_run(tmp_path / "old.h5", 2, 0.1, cfg={"overlap": True, "fl_algorithm": "scaffold"})
    assert (read.exchange(run), read.computing(run), read.overlapped(run)) == ("allreduce", "all", True)
    assert strategy_label(run) == "ring --overlap"  # a federated option is no part of a ring run's name


@pytest.mark.parametrize(
    ("spec", "by_size", "candidates", "uniform"),
    [("uniform", False, 0, True), ("size", True, 0, False), ("power-of-choice:4", False, 4, False)],
)
def test_selection_is_parsed_once_into_its_kind(spec, by_size, candidates, uniform):
    chosen = parse_selection(spec, clients=10, cohort=3)
    assert (chosen.by_size, chosen.candidates, chosen.uniform) == (by_size, candidates, uniform)


@pytest.mark.parametrize(
    "spec", ["best", "size:2", "uniform:1", "power-of-choice:2", "power-of-choice:11", "power-of-choice:x"]
)
def test_a_selection_outside_m_to_k_candidates_is_refused(spec):
    """m = 3, K = 10: D must lie in [3, 10]. Mutations caught: either bound off by one or dropped."""
    with pytest.raises(ValueError, match="m = 3 clients per round"):
        parse_selection(spec, clients=10, cohort=3)
    assert parse_selection("power-of-choice:3", 10, 3).candidates == 3
    assert parse_selection("power-of-choice:10", 10, 3).candidates == 10


def test_cohort_is_c_times_k_rounded_and_at_least_one():
    assert [cohort_size(10, f) for f in (0.01, 0.25, 0.3, 0.35, 1.0)] == [1, 2, 3, 4, 10]

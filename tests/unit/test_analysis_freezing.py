"""The freezing table and figure (analysis/views/freezing.py, analysis/figures/freezing.py) on hand-made files of
the real format: a run with freezing and one without, numbers computed by hand."""

import numpy as np
import pytest

from analysis.figures.freezing import comm_share_per_step, freezing_plots
from analysis.views.freezing import freezing_table
from tests.analysis_fixtures import ring_run, with_evals


def freezing_runs(tmp_path, cache: dict | None = None, plain_cfg: dict | None = None):
    """2 ranks, 5 steps of 1 s (step 0: 100 s, warm-up), 2 layers, an evaluation at step 5 (80 % without freezing,
    75 % with). Without freezing each rank sends 1000 B per layer and step (4000 B per step in all) and communicates
    0.2 s per step; with freezing (fixed:1@2, ``cache`` options added to its config) layer 0 stops after step 2, a
    batch of 32 per rank, cache hits per rank and step [0, 0, 0, 16, 32] and [0, 0, 8, 32, 32]."""
    plain = ring_run(tmp_path / "plain.h5", 2, 1.0, comm_s=0.2, cfg={"steps": 5} | (plain_cfg or {}))
    sent = np.full((2, 5, 2), 1000, dtype=np.int64)
    sent[:, 2:, 0] = 0
    extra = {
        "freeze/frozen_layers": (np.array([[0, 0, 1, 1, 1]] * 2, dtype=np.int64), "layers"),
        "timing/comm_bytes": (sent, "bytes"),
        "freeze/cache_hits": (np.array([[0, 0, 0, 16, 32], [0, 0, 8, 32, 32]], dtype=np.int64), "samples"),
        "freeze/cache_bytes": (np.zeros((2, 5), dtype=np.int64), "bytes"),
    }
    cfg = {"steps": 5, "freeze": "fixed:1@2"} | (cache or {})
    cut = ring_run(tmp_path / "cut.h5", 2, 1.0, comm_s=0.1, cfg=cfg, extra=extra, batch=32)
    return [with_evals(plain.path, [4], [0.8]), with_evals(cut.path, [4], [0.75])]


@pytest.fixture
def pair(tmp_path):
    return freezing_runs(tmp_path)


def test_freezing_table_by_hand(pair):
    """Measured steps 1-4: without freezing 4000 B per step; with it (4000 + 2000 x 3) / 4 = 2500 B; comm share
    0.2 s / 1 s and 0.1 / 1; 1 layer frozen at the end; from the cache (8 + 16 + 32 + 32 + 32) of 4 steps x 2 ranks
    x 32 samples = 120 / 256, none without it. Mutations caught: the warm-up step counted, the first rank's frozen
    count read from the first step, the cache's hits of one rank only."""
    rows = {r[3]: r for r in freezing_table(list(pair), 1).rows}
    assert set(rows) == {"none", "fixed:1@2"}
    assert rows["none"][7].mean == pytest.approx(4000) and rows["fixed:1@2"][7].mean == pytest.approx(2500)
    assert rows["none"][6].mean == pytest.approx(0.2) and rows["fixed:1@2"][6].mean == pytest.approx(0.1)
    assert rows["fixed:1@2"][8].mean == 1 and rows["none"][8].mean == 0
    assert rows["fixed:1@2"][9].mean == pytest.approx(120 / 256) and rows["none"][9].n == 0
    assert rows["fixed:1@2"][10].mean == pytest.approx(0.75)


def test_freezing_figure_and_share_per_step(pair, tmp_path):
    plain, cut = pair
    assert comm_share_per_step(cut)[1:] == pytest.approx([0.1] * 4)
    paths = freezing_plots([plain, cut], tmp_path / "figures")
    assert [p.name for p in paths if p.suffix == ".png"] == ["freezing_cut.png"]


def cached_pair(tmp_path, plain_cfg=None):
    """:func:`freezing_runs` with --freeze-cache (64 MiB)."""
    return freezing_runs(tmp_path, {"freeze_cache": True, "freeze_cache_mb": 64.0}, plain_cfg)


def test_the_whole_table_as_a_reader_sees_it(tmp_path):
    """Every cell by hand: 1 s steps; comm share 0.1 and 0.2; MiB per step 2500 and 4000 B; from cache 120 / 256 =
    46.9 %; to 70 %: 5 steps, 100 + 4 s, 14,000 B (2 x 4000 + 3 x 2000) and 20,000 B. Mutations caught: a column
    renamed, moved or formatted otherwise, a note changed, the cache's label lost."""
    table = freezing_table(cached_pair(tmp_path), 1, 0.7).markdown()
    head = "| strategy | model | ranks | freeze | n | step median (ms) | comm share (%) | MiB per step | frozen at end"
    head += " | from cache (%) | test accuracy (%) | steps to 70 % | train s to 70 % | MiB to 70 % | runs |"
    assert table.splitlines()[:6] == [
        "### Progressive layer freezing against training without it",
        "",
        head,
        "|:---|:---|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|",
        "| ring | mlp | 2 | fixed:1@2 + cache (64 MiB) | 1 | 1,000.00 | 10.0 | 0.002 | 1.0 | 46.9 | 75.00 | 5.0 "
        "| 104.00 | 0.01 | cut.h5 |",
        "| ring | mlp | 2 | none | 1 | 1,000.00 | 20.0 | 0.004 | 0.0 | – | 80.00 | 5.0 | 104.00 | 0.02 | plain.h5 |",
    ]
    assert (
        "- comm share = communication time / step time (mean over computing ranks of the sums over measured steps); "
        "MiB per step = bytes all ranks sent, mean over measured steps; frozen at end = leading layers frozen in the "
        "last step; from cache = samples whose frozen stages' output --freeze-cache served, share of the samples "
        "trained in the measured steps" in table.splitlines()
    )
    assert table.count("- to target: steps (rounds) trained") == 1


@pytest.mark.parametrize(
    "key",
    ["strategy", "model", "dataset", "synthetic_shape", "partition", "alpha", "batch_size", "global_batch_size",
     "accumulate_steps", "steps", "optimizer", "lr", "lr_schedule", "lr_warmup_steps", "momentum", "weight_decay",
     "bucket_mb", "local_steps", "warmup_steps", "overlap", "servers", "ps_mode"],
)  # fmt: skip
def test_a_run_without_freezing_of_another_setting_is_left_out(tmp_path, key):
    """The run without freezing differs in one option that changes the workload: it is not the baseline of the run
    with freezing, so the table holds the latter alone. Mutation caught: an option left out of the setting."""
    rows = freezing_table(cached_pair(tmp_path, {key: "other"}), 1).rows
    assert [r[3] for r in rows] == ["fixed:1@2 + cache (64 MiB)"]


def test_freeze_labels_name_the_cadence_and_unit():
    from types import SimpleNamespace

    from analysis.views.freezing import freeze_label

    auto = SimpleNamespace(config={"freeze": "auto:0.5", "freeze_every": 50, "freeze_unit": "block"})
    assert freeze_label(auto) == "auto:0.5 every 50 (blocks)"
    assert (
        freeze_label(SimpleNamespace(config={"freeze": "auto:0.5", "freeze_every": 20})) == "auto:0.5 every 20 (layers)"
    )
    assert freeze_label(SimpleNamespace(config={})) == "none"


def test_options_that_refine_freezing_are_no_sweep_without_it(tmp_path):
    """A run without --freeze (its config holds the defaults freeze_every 50, freeze_unit layer, freeze_cache
    false) and one with auto:0.5 every 30 and the cache: the sweep is over freeze and nothing else, since
    freeze_every and the cache do not vary among runs where they mean something. Mutation caught: the sub-options
    kept for the run without freezing (the pivot then also over freeze_every and freeze_cache)."""
    from analysis.views.pivot import swept_options

    off = {"steps": 5, "freeze": "", "freeze_every": 50, "freeze_unit": "layer", "freeze_cache": False}
    on = off | {"freeze": "auto:0.5", "freeze_every": 30, "freeze_cache": True, "freeze_cache_mb": 64.0}
    runs = [ring_run(tmp_path / f"{name}.h5", 2, 1.0, cfg=cfg) for name, cfg in (("off", off), ("on", on))]
    assert swept_options(runs) == ["freeze"]

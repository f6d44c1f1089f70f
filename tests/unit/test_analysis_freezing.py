"""The freezing table and figure (analysis/views/freezing.py, analysis/figures/freezing.py) on hand-made files of
the real format: a run with freezing and one without, numbers computed by hand."""

import numpy as np
import pytest

from analysis.figures.freezing import comm_share_per_step, freezing_plots
from analysis.views.freezing import freezing_table
from tests.analysis_fixtures import ring_run, with_evals


@pytest.fixture
def pair(tmp_path):
    """2 ranks, 5 steps of 1 s (step 0: 100 s, warm-up), 2 layers. Without freezing each rank sends 1000 B per layer
    and step (4000 B per step in all) and communicates 0.2 s per step; with freezing layer 0 stops after step 2."""
    plain = ring_run(tmp_path / "plain.h5", 2, 1.0, comm_s=0.2, cfg={"steps": 5})
    sent = np.full((2, 5, 2), 1000, dtype=np.int64)
    sent[:, 2:, 0] = 0
    extra = {
        "freeze/frozen_layers": (np.array([[0, 0, 1, 1, 1]] * 2, dtype=np.int64), "layers"),
        "timing/comm_bytes": (sent, "bytes"),
        "freeze/cache_hits": (np.array([[0, 0, 0, 16, 32], [0, 0, 8, 32, 32]], dtype=np.int64), "samples"),
        "freeze/cache_bytes": (np.zeros((2, 5), dtype=np.int64), "bytes"),
    }
    cut = ring_run(
        tmp_path / "cut.h5", 2, 1.0, comm_s=0.1, cfg={"steps": 5, "freeze": "fixed:1@2"}, extra=extra, batch=32
    )
    return with_evals(plain.path, [4], [0.8]), with_evals(cut.path, [4], [0.75])


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

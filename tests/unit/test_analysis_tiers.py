"""The heterogeneous-clients tables and figures (analysis/views/tiers.py, analysis/figures/tiers.py) on hand-made
files of the real format whose per-client rows are known: accuracy against weak clients, per-tier compute and
bytes computed by hand, dropped clients left out, and the layer shares each tier trains."""

import numpy as np
import pytest

from analysis.figures.tiers import layer_shares, tiers_plots
from analysis.views.tiers import tier_costs_table, tiers_table
from tests.analysis_fixtures import fedavg_run, with_evals

# (round, client, samples, status); client 0 strong, 1 and 2 weak; client 2 drops out in round 1 (status 1)
ROWS = [(0, 0, 10, 0), (0, 1, 10, 0), (0, 2, 10, 0), (1, 0, 10, 0), (1, 1, 10, 0), (1, 2, 10, 1)]
TIER = [0, 2, 2, 0, 2, 2]
BACKWARD = [0.4, 0.1, 0.3, 0.6, 0.2, 0.0]  # strong mean 0.5; weak over trained rows (0.1, 0.3, 0.2): 0.2
UPLOAD = [800, 200, 200, 800, 200, 0]


def tiered_run(path, algorithm: str, accuracy: float, seed: int):
    facts = {
        "strong": {"fraction": 1 / 3, "frozen_layers": 0, "speed": 1.0},
        "moderate": {"fraction": 0.0, "frozen_layers": 0, "speed": 1.0},
        "weak": {"fraction": 2 / 3, "frozen_layers": 1, "speed": 1.0},
        "tier_of_client": [0, 2, 2],
    }
    if algorithm == "width":
        facts["strong"] |= {"width": 1.0, "layer_parameters": [100, 300]}
        facts["weak"] |= {"width": 0.5, "layer_parameters": [50, 75]}
    extra = {
        "fedavg/clients/tier": (np.array(TIER, dtype=np.int8), "1"),
        "fedavg/clients/upload_bytes": (np.array(UPLOAD, dtype=np.int64), "bytes"),
        "fedavg/clients/backward_s": (np.array(BACKWARD), "s"),
        "fedavg/clients/forward_s": (np.array(BACKWARD) / 2, "s"),
        "layers/numel": (np.array([100, 300], dtype=np.int64), "1"),
    }
    cfg = {"fl_algorithm": algorithm, "clients": 3, "rounds": 2, "seed": seed}
    fedavg_run(path, 1, 2, ROWS, [1.0, 1.0], cfg, extra=extra, attrs={"client_tiers": facts})
    return with_evals(path, [1], [accuracy])


@pytest.fixture
def runs(tmp_path):
    return [
        tiered_run(tmp_path / "p0.h5", "partial", 0.70, 0),
        tiered_run(tmp_path / "p1.h5", "partial", 0.80, 1),
        tiered_run(tmp_path / "w0.h5", "width", 0.60, 0),
    ]


def test_accuracy_table_by_hand(runs):
    """Two partial seeds pooled (75 %), one width run; 1 strong, 2 weak clients; weak backward 0.2 / 0.5 = 40 %
    (the dropped row left out: with it the weak mean would be 0.15); weak upload 200 / 800 = 25 %. Mutations
    caught: dropped rows counted, tiers counted per row instead of per client, the strong tier as denominator lost."""
    table = tiers_table(runs)
    rows = {r[1]: r for r in table.rows}
    partial, width = rows["partial training (weak 1 frozen)"], rows["width reduction (weak r = 0.50)"]
    assert partial[2:7] == [1, 0, 2, 2, 2] and width[6] == 1
    assert partial[7].mean == pytest.approx(0.75) and width[7].mean == pytest.approx(0.60)
    assert partial[8].mean == pytest.approx(0.4) and partial[9].mean == pytest.approx(0.25)


def test_cost_table_per_tier_by_hand(runs):
    table = tier_costs_table(runs)
    partial = [r for r in table.rows if r[1] == "partial training (weak 1 frozen)"]
    assert [(r[3], r[4], r[5]) for r in partial] == [("strong", 1, 0), ("weak", 2, 1)]
    assert partial[1][8].mean == pytest.approx(0.2) and partial[1][7].mean == pytest.approx(0.1)
    assert partial[1][9].mean == pytest.approx(200) and partial[0][9].mean == pytest.approx(800)
    assert [r[6] for r in table.rows if r[1] == "width reduction (weak r = 0.50)"] == [1.0, 0.5]
    assert [r[6] for r in partial] == [None, None]  # no width ratio where the model was not narrowed


def test_layer_shares_and_figures(runs, tmp_path):
    """Partial: the weak tier trains none of layer 0 and all of layer 1; width: 50 of 100 and 75 of 300."""
    assert layer_shares(runs[0])[[0, 2]].tolist() == [[1.0, 1.0], [0.0, 1.0]]
    assert layer_shares(runs[2])[[0, 2]].tolist() == [[1.0, 1.0], [0.5, 0.25]]
    paths = tiers_plots(runs, tmp_path / "figures")
    assert {p.name for p in paths if p.suffix == ".png"} == {
        "tiers_accuracy.png", "tiers_layers_mlp_partial_training_weak_1_frozen.png",
        "tiers_layers_mlp_width_reduction_weak_r_050.png",
    }  # fmt: skip

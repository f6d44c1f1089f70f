"""Report views that only the smoke tests reached, on hand-made files with numbers computed here: the layer table,
the FedAvg table's options and aggregator share, the provenance table, and the ping-pong fit."""

import math

import numpy as np
import pytest

from analysis.models.costmodel import fit_p2p, p2p_time
from analysis.views.core import layers_table
from analysis.views.fl import aggregator_share, fedavg_table
from analysis.views.model import provenance_table
from tests.analysis_fixtures import compressed_pair, fedavg_run, ring_run


def column(table, name):
    i = [c.name for c in table.columns].index(name)
    return [row[i] for row in table.rows]


def test_layer_table_orders_layers_by_communication_and_reads_each_column(tmp_path):
    """2 ranks, 3 layers; per step: communication 1, 3, 2 ms, 1000 bytes, forward 0.5 and backward 1 ms per layer
    (the fixture splits 1.5 / 3 / 3 ms evenly, then layer comm is overridden): rows by comm time descending,
    bandwidth = bytes / comm, compute = forward + backward; the columns in their stated units."""
    steps, shape = 5, (2, 5, 3)
    comm = np.broadcast_to(np.array([0.001, 0.003, 0.002]), shape).copy()
    run = ring_run(tmp_path / "r.h5", 2, 0.01, layers=3, fwd_s=0.0015, bwd_s=0.003,
                   extra={"timing/comm": (comm, "s")}, steps=steps)  # fmt: skip
    table = layers_table([run], warmup=1, top=2)
    assert column(table, "layer") == ["l1", "l2"]  # top 2 of 3, by communication
    assert column(table, "communication (ms/step)") == pytest.approx([0.003, 0.002])
    assert column(table, "bytes/step") == pytest.approx([1000, 1000])
    assert column(table, "bandwidth (MB/s)") == pytest.approx([1000 / 0.003, 1000 / 0.002])
    assert column(table, "compute (ms/step)") == pytest.approx([0.0015, 0.0015])
    assert column(table, "strategy") == ["ring", "ring"] and table.name == "layers"
    assert [c.scale for c in table.columns[3:]] == [1e3, 1.0, 1e-6, 1e3]
    # as a reader sees it: 3 ms and 1000 B per step is 0.333 MB/s; compute 4.5 ms over 3 layers
    assert table.markdown().splitlines() == [
        "### Top 2 layers by communication time, per run",
        "",
        "| run | strategy | layer | communication (ms/step) | bytes/step | bandwidth (MB/s) | compute (ms/step) |",
        "|:---|:---|:---|---:|---:|---:|---:|",
        "| r.h5 | ring | l1 | 3.000 | 1,000 | 0.3 | 1.500 |",
        "| r.h5 | ring | l2 | 2.000 | 1,000 | 0.5 | 1.500 |",
        "",
        "- mean over computing ranks, measured steps (after 1) and repeats; bandwidth = bytes / comm time",
    ]
    assert len(layers_table([run], warmup=1).rows) == 3  # top 5 by default: all three
    assert layers_table([fed(tmp_path, "f.h5")], warmup=1).rows == []  # rounds have no per-layer steps
    assert len(layers_table([fed(tmp_path, "f.h5"), run], warmup=1, top=2).rows) == 2  # and do not stop the rest


def fed(tmp_path, name="f.h5", **cfg):
    clients = [(r, k, 10.0 * (k + 1), 0) for r in range(4) for k in range(2)]
    base = {"clients": 2, "fraction": 1.0, "local_epochs": 1, "local_steps": 0, "batch_size": 8,
            "partition": "iid", "alpha": 0.5, "fedprox_mu": 0.0, "server_opt": "avg"}  # fmt: skip
    return fedavg_run(tmp_path / name, 2, 4, clients, [0.1, 0.05, 0.05], base | cfg)


def test_aggregator_share_is_its_part_of_the_measured_round_time(tmp_path):
    """Rounds of 0.1 s at the aggregator (round 0: 100 s, warm-up); receive 0.02 s in every round: measured rounds
    1-3 give 0.06 / 0.3 = 20 %."""
    import h5py

    run = fed(tmp_path)
    with h5py.File(run.path, "a") as f:
        f["fedavg/aggregator_receive"][0, :] = 0.02
    from analysis.data.load import load

    run = load(run.path)
    assert aggregator_share(run, "receive", warmup=1) == pytest.approx(0.2)
    assert aggregator_share(run, "send", warmup=1) == 0.0
    assert aggregator_share(run, "receive", warmup=10) == pytest.approx(0.08 / 100.3)  # too short: all rounds


def test_fedavg_table_shows_each_runs_options(tmp_path):
    """K, C, E, B, partition, alpha, mu and the server optimizer from the config; T only where the run counted
    local steps, the Dirichlet alpha only where the partition was Dirichlet."""
    epochs, steps = fed(tmp_path, "e.h5"), fed(tmp_path, "s.h5", local_steps=3, fedprox_mu=0.1, server_opt="adam")
    skewed = fed(tmp_path, "d.h5", partition="dirichlet", alpha=0.1, seed=5)
    mixed = fedavg_table([epochs, skewed], warmup=1)
    assert sorted(zip(column(mixed, "partition"), column(mixed, "Dirichlet alpha")), key=str) == [
        ("dirichlet", 0.1),
        ("iid", None),  # an iid run's default alpha means nothing
    ]
    table = fedavg_table([epochs, steps], warmup=1)
    by = {name: column(table, name) for name in ("K", "C", "E", "T", "B", "partition", "mu", "server opt")}
    assert by["T"] == [None, 3] and by["K"] == [2, 2] and by["C"] == [1.0, 1.0] and by["E"] == [1, 1]
    assert by["B"] == [8, 8] and by["partition"] == ["iid", "iid"] and by["mu"] == [0.0, 0.1]
    assert by["server opt"] == ["avg", "adam"] and column(table, "rounds") == [4, 4]
    assert column(table, "ranks") == [3, 3]


def test_provenance_table_names_each_file_and_its_origin(tmp_path):
    run = ring_run(tmp_path / "p.h5", 2, 0.1, attrs={"status": "complete", "completed_steps": 5,
                   "git_commit": "0123456789abcdef", "mpi_library": "MPICH Version: 5.0.2 " + "x" * 40,
                   "slurm_job_id": "77"}, cfg={"seed": 9})  # fmt: skip
    table = provenance_table([run])
    assert table.rows == [
        [
            "p.h5",
            "ring",
            2,
            "complete",
            5,
            9,
            "2026-11-21T00:00:00",
            "0123456789",
            ("MPICH Version: 5.0.2 " + "x" * 40)[:30],
            "77",
        ]
    ]
    assert [c.name for c in table.columns] == ["file", "strategy", "ranks", "status", "steps", "seed", "created (UTC)",
                                               "commit", "MPI", "Slurm job"]  # fmt: skip


def test_ping_pong_fit_recovers_latency_and_inverse_bandwidth():
    """t = 2 us + n x 0.1 ns exactly: the weighted least squares returns both, for every message size."""
    sizes = np.array([8, 64, 1024, 65536, 1 << 20, 1 << 24], dtype=np.float64)
    fit = fit_p2p(sizes, 2e-6 + sizes * 1e-10)
    for name in ("ring", "doubling"):
        f = fit.algorithms[name]
        assert f.alpha == pytest.approx(2e-6, rel=1e-9) and f.beta == pytest.approx(1e-10, rel=1e-9)
        assert (f.lo_bytes, f.hi_bytes, f.points) == (8.0, float(1 << 24), 6) and f.error == pytest.approx(0, abs=1e-9)
    assert fit.source == "ping-pong latency" and p2p_time(1000, fit) == pytest.approx(2e-6 + 1e-7)


def test_estimate_is_the_mean_with_its_95_percent_t_interval():
    """Three repeats 1, 2, 6: mean 3, s = sqrt(7), half-width t_{0.975, 2} s / sqrt(3) with t_{0.975, 2} =
    4.30265273 (tables of Student's t, 9 digits); None and NaN ("not reached") are left out of n; one value has no
    interval, none gives NaN."""
    from analysis.stats.intervals import Estimate, estimate

    e = estimate([1.0, None, 2.0, float("nan"), 6.0])
    half = 4.30265273 * np.sqrt(7.0) / np.sqrt(3.0)
    assert (e.mean, e.n) == (3.0, 3) and e.half == pytest.approx(half, rel=1e-8)
    assert (e.low, e.high) == pytest.approx((3.0 - half, 3.0 + half), rel=1e-8) and float(e) == 3.0
    one = estimate([4.0])
    assert (one.mean, one.n) == (4.0, 1) and np.isnan(one.half)
    none = estimate([None, float("inf")])
    assert none.n == 0 and np.isnan(none.mean) and np.isnan(none.half)
    assert Estimate(1.0, 0.5, 2).low == 0.5


def test_fedavg_table_warns_where_attackers_outnumber_the_rule(tmp_path):
    check = {"rule": "krum", "attackers_max": 2, "tolerated_min": 1, "rounds": 4, "rounds_exceeded": 3}
    table = fedavg_table([fed(tmp_path, "k.h5")], warmup=1)
    assert not any(n.startswith("warning") for n in table.notes)
    run = fed(tmp_path, "b.h5", aggregator="krum:1")
    import h5py

    from analysis.data.load import load

    with h5py.File(run.path, "a") as f:
        import json

        f.attrs["byzantine_check"] = json.dumps(check)
    note = [n for n in fedavg_table([load(run.path)], warmup=1).notes if n.startswith("warning")]
    assert len(note) == 1 and "up to 2 attackers per round against krum, which tolerates 1, in 3 of 4 rounds" in note[0]


def test_fedlama_pattern_numbers_rounds_from_one(tmp_path):
    """Every printout numbers rounds 1..R; the pattern figure drew them 0..R-1."""
    import json

    import h5py

    from analysis.data.load import load
    from analysis.figures.fedlama import pattern_figure

    run = fed(tmp_path, "l.h5", fl_algorithm="fedlama", fedlama_phi=2, local_steps=2)
    with h5py.File(run.path, "a") as f:
        averaged = np.array([[[1, 1], [0, 1], [1, 1], [0, 1]]] * 3, dtype=np.int8)  # (ranks, rounds, layers)
        f.create_dataset("fedlama/averaged", data=averaged)
        f.create_dataset("fedlama/discrepancy", data=np.where(averaged > 0, 0.5, np.nan))
        f.attrs["config"] = json.dumps(json.loads(f.attrs["config"]) | {"fl_algorithm": "fedlama"})
    fig = pattern_figure(load(run.path))
    left, right = fig.axes[0], fig.axes[1]
    assert left.get_xlim() == (0.5, 4.5) and right.get_xlim() == (0.5, 4.5)
    assert left.get_xlabel() == "round" and [t.get_text() for t in left.get_yticklabels()] == ["l0", "l1"]
    assert np.array_equal(left.images[0].get_array(), averaged[0].T)


def test_provenance_table_renders_each_kind_and_blank_where_a_file_has_no_record(tmp_path):
    """Numbers right-aligned (ranks, steps, seed), text left; a file without status, commit, MPI or Slurm job shows
    a dash for unknown values and empty text for absent ones, never a placeholder."""
    full = ring_run(tmp_path / "a.h5", 2, 0.1, attrs={"status": "complete", "completed_steps": 1234,
                    "git_commit": "0123456789abcdef", "mpi_library": "MPICH", "slurm_job_id": "77"})  # fmt: skip
    bare = ring_run(tmp_path / "b.h5", 1, 0.1)
    import h5py

    from analysis.data.load import load

    with h5py.File(bare.path, "a") as f:
        del f.attrs["created_utc"]
    lines = provenance_table([full, load(bare.path)]).markdown().splitlines()
    assert lines[3] == "|:---|:---|---:|:---|---:|---:|:---|:---|:---|:---|"
    assert lines[4] == "| a.h5 | ring | 2 | complete | 1,234 | 0 | 2026-11-21T00:00:00 | 0123456789 | MPICH | 77 |"
    assert lines[5] == "| b.h5 | ring | 1 | – | – | 0 |  |  |  |  |"


def lama_file(tmp_path, name, averaged, local_steps, algorithm="fedlama", numel=(30, 10)):
    import h5py

    from analysis.data.load import load

    run = fed(tmp_path, name, fl_algorithm=algorithm, fedlama_phi=2, local_steps=local_steps)
    with h5py.File(run.path, "a") as f:
        if averaged is not None:
            f.create_dataset("fedlama/averaged", data=np.array([averaged] * 3, dtype=np.int8))
        f.create_dataset("layers/numel", data=np.array(numel, dtype=np.int64))
    return load(run.path)


def test_fedlama_table_shares_and_communication_against_fedavg_at_its_smallest_t(tmp_path):
    """Layers of 30 and 10 parameters over 4 rounds; FedLAMA (T = 4) averages the first layer in rounds 2 and 4 and
    the second in every one: (2 x 30 + 4 x 10) / (4 x 40) = 62.5 %; against FedAvg with T = 2 at equal local steps
    that is 62.5 % x 2 / 4 = 31.25 %. FedAvg itself: 100 % and, with T = 2, 100 %. A FedAvg run that counted epochs
    (T = 0) and a setting with no FedLAMA run are left out."""
    from analysis.views.fedlama import averaged_share, fedlama_table

    lama = lama_file(tmp_path, "lama.h5", [[0, 1], [1, 1], [0, 1], [1, 1]], 4)
    plain = lama_file(tmp_path, "avg.h5", None, 2, algorithm="fedavg")
    epochs = lama_file(tmp_path, "epochs.h5", None, 0, algorithm="fedavg")
    assert averaged_share(lama.data) == 0.625 and averaged_share(plain.data) == 1.0
    table = fedlama_table([lama, plain, epochs])
    assert column(table, "T") == [2, 4] and column(table, "PHI") == [None, 2] and column(table, "rounds") == [4, 4]
    share = column(table, "averaged per round (%)")
    versus = column(table, "communication vs FedAvg(T min) (%)")
    assert [e.mean for e in share] == [1.0, 0.625] and [e.mean for e in versus] == [1.0, 0.3125]
    assert column(table, "K") == [2, 2] and column(table, "C") == [1.0, 1.0] and column(table, "ranks") == [3, 3]
    lines = table.markdown().splitlines()
    assert lines[3] == "|:---|---:|---:|---:|:---|---:|---:|---:|---:|---:|---:|---:|"
    alone = lama_file(tmp_path, "other.h5", None, 2, algorithm="fedavg")
    assert fedlama_table([alone]).rows == []  # no FedLAMA run in its setting


def test_comm_to_compute_divides_by_forward_and_backward_only():
    from analysis.stats.metrics import comm_to_compute

    assert comm_to_compute({"comm": 3.0, "forward": 1.0, "backward": 2.0, "optimizer": 50.0}) == 1.0
    assert comm_to_compute({"comm": 3.0, "forward": 0.0, "backward": 0.0}) == 0.0


def test_fedavg_round_model_is_two_transfers_of_the_model_per_sampled_client(tmp_path):
    """Each sampled client downloads and uploads every layer: 2 m sum_l (alpha + n_l beta), m the median of the
    per-round sampled counts (3, 5, 5 -> 5)."""
    import h5py

    from analysis.data.load import load
    from analysis.models.costmodel import Fit
    from analysis.models.prediction import comm_per_step

    run = fed(tmp_path, "m.h5")
    with h5py.File(run.path, "a") as f:
        f["fedavg/sampled"][0, :3] = [3, 5, 5]
        f["fedavg/sampled"][0, 3] = 5
    fit = Fit.given(1e-6, 1e-9)
    expected = 2 * 5 * 2 * (1e-6 + 4000 * 1e-9)  # two layers of 4000 bytes
    assert comm_per_step(load(run.path), 3, fit) == pytest.approx(expected, rel=1e-12)


def test_speedup_communication_and_strategy_tables_as_a_reader_sees_them(tmp_path):
    """Two ring runs, 10 samples per rank and step, step 0 (100 s) left out: 1 rank at 0.2 s (50 samples/s) and
    2 ranks at 0.25 s with 0.05 s of communication (80 samples/s: speedup 1.6, efficiency 80 %; 4 measured steps:
    1 s overall, 0.2 s communication, 0.6 s forward + backward: 20 %); the 2-rank run reaches 80 % at step 5
    (index 4), after 100 + 4 x 0.25 = 101 s and 5 steps x 2 ranks x 2 layers x 1000 B = 0.019 MiB."""
    from analysis.views.core import communication_table, speedup_table, strategy_table
    from tests.analysis_fixtures import with_evals

    one = ring_run(tmp_path / "r1.h5", 1, 0.2, fwd_s=0.05, bwd_s=0.1)
    two = ring_run(tmp_path / "r2.h5", 2, 0.25, comm_s=0.05, fwd_s=0.05, bwd_s=0.1)
    two = with_evals(two.path, [1, 4], [0.5, 0.8])
    speed = speedup_table([one, two], 1).markdown().splitlines()
    assert (
        speed[0] == "### Throughput, speedup and efficiency (against the fewest computing ranks of the same workload)"
    )
    assert speed[2] == (
        "| strategy | model | dataset | scaling | ranks | computing ranks | n | step or round median (ms) | samples/s "
        "| speedup | efficiency (%) | oversubscribed | runs |"
    )
    assert speed[3] == "|:---|:---|:---|:---|---:|---:|---:|---:|---:|---:|---:|:---|:---|"
    assert speed[4:6] == [
        "| ring | mlp | digits | weak | 1 | 1 | 1 | 200.00 | 50 | 1.00 | 100.0 | no | r1.h5 |",
        "| ring | mlp | digits | weak | 2 | 2 | 1 | 250.00 | 80 | 1.60 | 80.0 | no | r2.h5 |",
    ]
    comm = communication_table([one, two], 1).markdown().splitlines()
    assert comm[0] == "### Communication vs computation (PipeTransformer Table 2 form)"
    assert comm[2:6] == [
        "| strategy | model | ranks | n | overall (s) | communication (s) | packing (s) | computation (s) | wait (s) "
        "| communication share (%) | runs |",
        "|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|:---|",
        "| ring | mlp | 1 | 1 | 0.800 | 0.000 | 0.000 | 0.600 | 0.000 | 0.0 | r1.h5 |",
        "| ring | mlp | 2 | 1 | 1.000 | 0.200 | 0.000 | 0.600 | 0.000 | 20.0 | r2.h5 |",
    ]
    strat = strategy_table([one, two], 1, target=0.7).markdown().splitlines()
    assert strat[0] == "### Strategy comparison (same model and ranks side by side)"
    assert strat[2:6] == [
        "| model | ranks | strategy | n | samples/s | communication share (%) | time blocked (s) | staleness mean "
        "| staleness max | final loss | test accuracy (%) | steps to 70 % | train s to 70 % | MiB to 70 % | runs |",
        "|:---|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|",
        "| mlp | 1 | ring | 1 | 50 | 0.0 | 0.000 | – | – | 1.000 | – | not reached | not reached | not reached "
        "| r1.h5 |",
        "| mlp | 2 | ring | 1 | 80 | 20.0 | 0.000 | – | – | 1.000 | 80.0 | 5.0 | 101.00 | 0.02 | r2.h5 |",
    ]
    assert any(n.startswith("to target: steps (rounds) trained") for n in strategy_table([one, two], 1, 0.7).notes)
    assert not any(n.startswith("to target") for n in strategy_table([one, two], 1).notes)


def test_compression_and_overlap_tables_as_a_reader_sees_them(tmp_path):
    """Compression: per rank and step 2 layers x 1000 B sent = 2.0 KiB, a quarter of the 4000 B dense each; 2 x
    0.01 s of compression in a 0.1 s step = 20 %. Overlap: forward 0.02 + backward 0.05 + optimizer 0.01 = 80 % of
    a 0.1 s step computing, 0.01 s exposed (10 %), 0.04 - 0.01 = 0.03 s overlapped (30 %, 75 % of the
    communication), free 0.1 - 0.08 - 0.01 = 10 %."""
    from analysis.views.compress import compression_table
    from analysis.views.overlap import overlap_table

    dense, topk = compressed_pair(tmp_path)
    lines = compression_table([dense, topk], 1).markdown().splitlines()
    assert lines[0] == (
        "### Compressed communication against the uncompressed run (same workload but for the compression)"
    )
    assert lines[2:6] == [
        "| model | ranks | strategy | method | error feedback | n | KiB sent per step | of dense (%) "
        "| step median (ms) | compression (% of step) | residual norm | test accuracy (%) | oversubscribed |",
        "|:---|---:|:---|:---|:---|---:|---:|---:|---:|---:|---:|---:|:---|",
        "| mlp | 2 | ring | none | - | 1 | 2.0 | 100.00 | 100.00 | 0.0 | 0.000 | – | no |",
        "| mlp | 2 | ring | topk:0.01 | on | 1 | 2.0 | 25.00 | 100.00 | 20.0 | 3.000 | – | no |",
    ]
    exposed = {"timing/exposed": (np.full((2, 5), 0.01), "s")}
    over = ring_run(tmp_path / "o.h5", 2, 0.1, comm_s=0.04, fwd_s=0.02, bwd_s=0.05, opt_s=0.01,
                    cfg={"overlap": True}, extra=exposed)  # fmt: skip
    lines = overlap_table([over, dense], 1).markdown().splitlines()
    assert lines[0] == "### Communication overlapped with computation (cluster-profiler step breakdown)"
    assert lines[2:6] == [
        "| model | ranks | strategy | overlap | n | step median (ms) | computing (% of step) | communication not "
        "overlapped (% of step) | overlapped (% of step) | free (% of step) | overlap (%) | oversubscribed | runs |",
        "|:---|---:|:---|:---|---:|---:|---:|---:|---:|---:|---:|:---|:---|",
        "| mlp | 2 | ring | no | 1 | 100.00 | 0.0 | 0.0 | 0.0 | 100.0 | – | no | d.h5 |",
        "| mlp | 2 | ring --overlap | yes | 1 | 100.00 | 80.0 | 10.0 | 30.0 | 10.0 | 75.0 | no | o.h5 |",
    ]


def test_fedavg_table_as_a_reader_sees_it(tmp_path):
    """Clients of 10 and 20 samples, B = 8, E = 1: one batch of 8 and two of 8 = 24 samples in a 0.1 s round:
    240 samples/s; 3 ranks x 2 layers x 1000 B = 6000 B per round (0.01 MiB); receiving 0.02 of 0.1 s = 20 %;
    dropped 0 + 1 + 0 + 1, late 1."""
    import h5py

    from analysis.data.load import load

    run = fed(tmp_path)
    with h5py.File(run.path, "a") as f:
        f["fedavg/aggregator_receive"][0, :] = 0.02
        f["fedavg/dropped"][0, :] = [0, 1, 0, 1]
        f["fedavg/late"][0, :] = [0, 0, 1, 0]
    lines = fedavg_table([load(run.path)], 1).markdown().splitlines()
    assert lines[0] == "### FedAvg runs"
    assert lines[2:5] == [
        "| ranks | algorithm | K | C | E | T | B | partition | Dirichlet alpha | mu | server opt | n | rounds "
        "| MiB per round | round median (ms) | samples/s | aggregator receiving (%) | test accuracy (%) | dropped "
        "| late | runs |",
        "|---:|:---|---:|---:|---:|---:|---:|:---|---:|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|",
        "| 3 | fedavg | 2 | 1.00 | 1 | – | 8 | iid | – | 0.00 | avg | 1 | 4 | 0.01 | 100.0 | 240 | 20.0 | – | 2.0 "
        "| 1.0 | f.h5 |",
    ]


def test_model_table_as_a_reader_sees_it(tmp_path):
    """alpha 10 us, beta 1 ns/B; 2 layers of 4000 B (doubling below 128 KiB: 1 step at p = 2, 2 at p = 4): the
    measured 0.1 s step less 0.02 s of communication + 2 x 14 us = 80.03 ms (-20.0 %); at p = 4, 80.06 ms and a
    weak-scaling speedup of 2 x 80.028 / 80.056 = 2.0."""
    from analysis.models.costmodel import Fit
    from analysis.views.model import model_table

    run = ring_run(tmp_path / "r.h5", 2, 0.1, comm_s=0.02)
    lines = model_table([run], Fit.given(1e-5, 1e-9), [4], 1).markdown().splitlines()
    assert lines[0] == "### Cost model: measured vs predicted step, and predictions at scale"
    assert lines[2:5] == [
        "| run | strategy | ranks | measured (ms) | predicted (ms) | error (%) | oversubscribed | p=4 step (ms) "
        "| p=4 speedup |",
        "|:---|:---|---:|---:|---:|---:|:---|---:|---:|",
        "| r.h5 | ring | 2 | 100.00 | 80.03 | -20.0 | no | 80.06 | 2.0 |",
    ]
    assert lines[6] == "- fitted from given (--alpha, --beta)"
    assert model_table([fed(tmp_path)], Fit.given(1e-5, 1e-9), [4], 1).rows == []  # rounds: not predicted


def test_speedup_figure_reaches_every_efficiency_and_marks_the_impossible(tmp_path):
    """Efficiency 250 % (2 x 10 / 0.4 s against 10 / 1 s on 2 ranks): the efficiency axis goes past it (it was cut
    at 1.2), the point carries a dagger and the caption says what it means; the bars are labelled as 95 % t CIs."""
    from analysis.figures.groups import speedup_figure
    from analysis.stats.groups import speedups

    rows = speedups([ring_run(tmp_path / "a.h5", 1, 1.0), ring_run(tmp_path / "b.h5", 2, 0.4)], 1)
    fig = speedup_figure(rows)
    speed, eff = fig.axes
    assert eff.get_ylim()[1] >= 2.5 and speed.get_xlabel() == eff.get_xlabel() == "computing ranks"
    assert [t.get_text() for t in eff.texts] == ["†"]
    caption = fig.texts[0].get_text()
    assert "95 % t CI over repeats" in caption and "†: efficiency above 105 %" in caption
    calm = speedup_figure(speedups([ring_run(tmp_path / "c.h5", 1, 1.0), ring_run(tmp_path / "d.h5", 2, 1.0)], 1))
    assert calm.axes[1].get_ylim() == (0.0, 1.2) and not calm.axes[1].texts and "†" not in calm.texts[0].get_text()
    assert speedup_figure(speedups([ring_run(tmp_path / "e.h5", 1, 1.0)], 1)) is None


def test_accuracy_figure_labels_by_what_differs_and_bands_are_95_percent_intervals(tmp_path):
    """Three repeats of one ring run (accuracies 0.5, 0.6, 0.7 at the last evaluation: mean 0.6, half-width
    t(0.975, 2) x 0.1 / sqrt(3) = 0.2484) and a localsgd run: legend labels name the strategy and its options and
    the rank count in words, not every config key that differs between strategies; the band is that interval."""
    from analysis.figures.groups import accuracy_figure
    from tests.analysis_fixtures import with_evals, write_run

    for seed in range(3):
        ring_run(tmp_path / f"r{seed}.h5", 2, 0.1, cfg={"seed": seed, "bucket_mb": 1.0})
    write_run(tmp_path / "l.h5", ["peer"] * 2, 0.1, strategy="localsgd", cfg={"local_steps": 4, "warmup_steps": 2})
    runs = [with_evals(tmp_path / f"r{s}.h5", [1, 4], [0.3, a]) for s, a in enumerate((0.5, 0.6, 0.7))]
    runs.append(with_evals(tmp_path / "l.h5", [1, 4], [0.2, 0.4]))
    fig = accuracy_figure(runs)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["localsgd, 2 ranks (1 run)", "ring, 2 ranks (3 runs)"]
    band = fig.axes[0].collections[0].get_paths()[0].vertices[:, 1]
    half = 100 * 4.30265273 * 0.1 / np.sqrt(3)
    assert band.max() == pytest.approx(60 + half, rel=1e-6) and band.min() == pytest.approx(30, rel=1e-6)
    assert fig.texts[0].get_text().startswith("bands: 95 % t CI over repeats")
    assert fig.axes[0].get_ylabel() == "test accuracy (%)" and fig.axes[1].get_xlabel() == "MiB moved (all ranks)"


def test_legend_labels_name_an_option_once(tmp_path):
    """A compressed and a dense ring with another lr: the compression is in the strategy label, so the swept
    options add only lr (the label said 'ring --compress topk:0.01, compress=topk:0.01' before). Catches:
    LABELLED_OPTIONS not left out, or the swept lr dropped."""
    from analysis.data.load import load
    from analysis.figures.groups import group_labels
    from analysis.stats.groups import repeat_groups

    ring_run(tmp_path / "a.h5", 2, 0.1, cfg={"lr": 0.2})
    ring_run(tmp_path / "b.h5", 2, 0.1, cfg={"compress": "topk:0.01"})
    groups = repeat_groups([load(tmp_path / "a.h5"), load(tmp_path / "b.h5")])
    assert sorted(group_labels(groups)) == [
        "ring --compress topk:0.01, lr=0.1, 2 ranks (1 run)",
        "ring, lr=0.2, 2 ranks (1 run)",
    ]


def test_staleness_figure_keeps_clocks_and_updates_apart_and_labels_each_mode(tmp_path):
    """ssp counts clocks, async updates: one panel each; async carries no staleness bound in its label, ssp says
    s = 2 once (it read "ssp ssp")."""
    from analysis.figures.groups import staleness_figure
    from tests.analysis_fixtures import ps_run

    def with_staleness(name, mode, unit, values):
        extra = {"ps/updates/staleness": (np.array(values, dtype=np.float64), unit)}
        return ps_run(tmp_path / name, 1, 2, 0.1, cfg={"ps_mode": mode, "staleness": 2}, extra=extra)

    ssp = with_staleness("s.h5", "ssp", "clocks", [0, 1, 1, 2])
    import h5py

    from analysis.data.load import load

    with h5py.File(ssp.path, "a") as f:
        f.attrs["strategy"] = "ssp"
    ssp = load(ssp.path)
    asyn = with_staleness("a.h5", "async", "updates", [0, 0, 3])
    fig = staleness_figure([ssp, asyn])
    clocks, updates = fig.axes
    assert clocks.get_xlabel() == "staleness (clocks)" and updates.get_xlabel() == "staleness (updates)"
    assert [t.get_text() for t in clocks.get_legend().get_texts()] == ["ssp, s=2 (s.h5)"]
    assert [t.get_text() for t in updates.get_legend().get_texts()] == ["ps async (a.h5)"]
    assert [round(b.get_height(), 6) for b in clocks.patches] == [25.0, 50.0, 25.0]
    assert staleness_figure([with_staleness("y.h5", "sync", "clocks", [0, 0])]) is None  # 0 by construction


def test_layer_figure_draws_the_steps_own_parts_on_the_same_scale(tmp_path):
    """Per step: 2 layers of 0.5 ms compute and 1 ms communication, and 30 ms waiting (a FedAvg host waiting for
    the model, say): the waiting bar stands beside the layers at 30 ms (it was only in the title, so the bars read
    compute-bound); packing absent, so not drawn; an x label; no tick label below 7 pt."""
    from analysis.figures.run import layer_figure

    run = ring_run(tmp_path / "w.h5", 2, 0.04, fwd_s=0.0005, bwd_s=0.0005, comm_s=0.002, wait_s=0.03)
    fig = layer_figure(run, 1)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["l0", "l1", "waiting"]
    assert [round(p.get_height(), 9) for p in ax.patches] == [0.5, 0.5, 1.0, 1.0, 30.0]
    assert ax.get_xlabel().startswith("layer (input side first)") and ax.get_ylabel() == "ms per step"
    assert min(t.get_fontsize() for t in ax.get_xticklabels()) >= 7
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.get_window_extent().x1 - 1  # beside, not over the bars


def test_layer_figures_of_one_model_share_their_y_scale(tmp_path):
    """Two mlp runs whose tallest bars are 30 ms (waiting) and 3 ms (communication 2 + compute 1) get one y axis
    up to 1.05 x 30 ms, said on the figure; a cnn run alone keeps its own (1.05 x 1.5 ms). Catches: per-figure
    autoscaling of a sweep's figures (equal bars looked unequal), or one scale across models."""
    from analysis.figures.run import layer_figures

    slow = ring_run(tmp_path / "a.h5", 2, 0.04, fwd_s=0.0005, bwd_s=0.0005, comm_s=0.002, wait_s=0.03)
    fast = ring_run(tmp_path / "b.h5", 2, 0.04, fwd_s=0.0005, bwd_s=0.0005, comm_s=0.004)
    other = ring_run(tmp_path / "c.h5", 2, 0.04, fwd_s=0.001, bwd_s=0.001, comm_s=0.001, cfg={"model": "cnn"})
    figs = layer_figures([slow, fast, other])
    tops = [fig.axes[0].get_ylim()[1] for fig in figs]
    assert tops == pytest.approx([31.5, 31.5, 1.05 * 1.5])
    assert "shared by the 2 layer figures of mlp" in figs[1].texts[0].get_text() and not figs[2].texts


def test_compression_figure_pairs_only_runs_that_differ_by_their_compression(tmp_path):
    """A dense run with another partition is no baseline for a top-k run (they were paired unsaid); with the
    right baseline the figure has both curves and plain tick labels on the log axis (not 2x10^1)."""
    from analysis.figures.compress import block_figure, compression_plots
    from analysis.views.compress import _setting
    from tests.analysis_fixtures import with_evals

    ring_run(tmp_path / "d.h5", 2, 0.1, cfg={"partition": "dirichlet"})
    ring_run(tmp_path / "t.h5", 2, 0.1, cfg={"compress": "topk:0.01"})
    dense, topk = (with_evals(tmp_path / f"{n}.h5", [1, 4], [0.5, 0.8]) for n in "dt")
    assert _setting(dense) != _setting(topk) and compression_plots([dense, topk], tmp_path / "none") == []
    ring_run(tmp_path / "b.h5", 2, 0.1)
    base = with_evals(tmp_path / "b.h5", [1, 4], [0.5, 0.8])
    assert _setting(base) == _setting(topk)
    from analysis.stats.groups import repeat_groups

    fig = block_figure(_setting(base), repeat_groups([base, topk]), None)
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[1].get_xticklabels() if t.get_text()]
    assert labels and all("times" not in s and "^" not in s and "×" not in s for s in labels)
    assert len(fig.axes[0].lines) == 2


def test_fedavg_figure_says_whose_clients_it_shows_and_keeps_its_legend_off_the_bars(tmp_path):
    from analysis.figures.groups import fedavg_figure
    from tests.analysis_fixtures import with_evals

    a, b = fed(tmp_path, "a.h5"), fed(tmp_path, "b.h5", local_epochs=2)
    runs = [with_evals(r.path, [0, 3], [0.3, 0.6]) for r in (a, b)]
    fig = fedavg_figure(runs)
    acc, clients = fig.axes
    assert acc.get_xlabel() == clients.get_xlabel() == "round" and acc.get_xlim()[0] < 1 < 4 < acc.get_xlim()[1]
    assert clients.get_title() == "Clients per round of the first line (a.h5; the other 1 not shown)"
    fig.canvas.draw()
    legend = clients.get_legend().get_window_extent()
    assert legend.y0 >= clients.get_window_extent().y1 - 1  # above the bars, not over the last one
    assert [t.get_text() for t in clients.get_legend().get_texts()] == ["finished", "late", "dropped"]


def test_fedlama_table_whole_as_a_reader_sees_it(tmp_path):
    """With a 65 % target: FedLAMA reaches 70 % at round 4 (index 3) after 100 + 3 x 0.1 = 100.3 s and 3 ranks x
    2 layers x 1000 B x 4 rounds = 0.023 MiB; 31.25 % prints as 31.2 (one decimal); FedAvg's 60 % never reaches
    it. A run of another dataset is another setting: it has no FedLAMA run and is left out."""
    from analysis.views.fedlama import fedlama_table
    from tests.analysis_fixtures import with_evals

    lama = lama_file(tmp_path, "lama.h5", [[0, 1], [1, 1], [0, 1], [1, 1]], 4)
    plain = lama_file(tmp_path, "avg.h5", None, 2, algorithm="fedavg")
    other = fed(tmp_path, "other.h5", local_steps=2, dataset="mnist")
    runs = [with_evals(lama.path, [0, 3], [0.4, 0.7]), with_evals(plain.path, [0, 3], [0.5, 0.6]), other]
    assert fedlama_table(runs, target=0.65).markdown().splitlines() == [
        "### Layer-wise aggregation (FedLAMA) against FedAvg",
        "",
        "| model | K | C | ranks | algorithm | T | PHI | n | rounds | averaged per round (%) | communication vs "
        "FedAvg(T min) (%) | test accuracy (%) | rounds to 65 % | train s to 65 % | MiB to 65 % |",
        "|:---|---:|---:|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        "| mlp | 2 | 1.00 | 3 | fedavg | 2 | – | 1 | 4 | 100.0 | 100.0 | 60.00 | not reached | not reached | "
        "not reached |",
        "| mlp | 2 | 1.00 | 3 | fedavg --fl-algorithm fedlama | 4 | 2 | 1 | 4 | 62.5 | 31.2 | 70.00 | 4.0 | 100.30 "
        "| 0.02 |",
        "",
        "- " + POOLED,
        "- averaged per round = sum over rounds and layers of (layer averaged x its parameters) / (rounds x model "
        "parameters): 100 % for FedAvg; communication vs FedAvg(T min) = that share x T min / T, the bytes per local "
        "step against FedAvg with the setting's smallest T (uploads; downloads follow the same pattern)",
        "- to target: steps (rounds) trained, training seconds (sum of step times; evaluation left out) and bytes "
        "moved by all ranks until the first evaluation at or above the target; n counts the runs that reached it",
    ]
    table = fedlama_table(runs)
    assert len(table.columns) == 12 and len(table.notes) == 2 and table.name == "fedlama"


@pytest.mark.parametrize("key, value", [("model", "cnn"), ("dataset", "mnist"), ("clients", 9), ("fraction", 0.5),
                                        ("partition", "dirichlet"), ("alpha", 0.1)])  # fmt: skip
def test_a_fedlama_setting_is_every_option_that_shapes_the_comparison(tmp_path, key, value):
    from analysis.views.fedlama import _setting, averaged_share

    base = fed(tmp_path, "a.h5", local_steps=2)
    assert _setting(base) != _setting(fed(tmp_path, "b.h5", local_steps=2, **{key: value}))
    assert _setting(base) == _setting(fed(tmp_path, "c.h5", local_steps=4, seed=3))
    ranks = {"fedlama/averaged": np.array([[[1, 0]], [[0, 0]], [[0, 0]]]), "layers/numel": np.array([3, 1])}
    assert averaged_share(ranks) == 0.75  # rank 0's rows (3 of 4 parameters), not another rank's
    assert np.isnan(averaged_share({"fedlama/averaged": np.zeros((3, 0, 2)), "layers/numel": np.array([3, 1])}))


def test_compression_table_whole_as_a_reader_sees_it(tmp_path):
    """With a 70 % target: the dense run reaches 80 % at step 5 (index 4), after 100 + 4 x 0.1 = 100.4 s and
    2 ranks x 2 layers x 1000 B x 5 steps = 0.019 MiB; top-k's 60 % never does."""
    from analysis.views.compress import compression_table
    from tests.analysis_fixtures import with_evals

    compressed_pair(tmp_path)
    dense = with_evals(tmp_path / "d.h5", [1, 4], [0.5, 0.8])
    topk = with_evals(tmp_path / "t.h5", [1, 4], [0.4, 0.6])
    assert compression_table([dense, topk], 1, target=0.7).markdown().splitlines() == [
        "### Compressed communication against the uncompressed run (same workload but for the compression)",
        "",
        "| model | ranks | strategy | method | error feedback | n | KiB sent per step | of dense (%) "
        "| step median (ms) | compression (% of step) | residual norm | test accuracy (%) | steps to 70 % "
        "| train s to 70 % | MiB to 70 % | oversubscribed |",
        "|:---|---:|:---|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|",
        "| mlp | 2 | ring | none | - | 1 | 2.0 | 100.00 | 100.00 | 0.0 | 0.000 | 80.0 | 5.0 | 100.40 | 0.02 | no |",
        "| mlp | 2 | ring | topk:0.01 | on | 1 | 2.0 | 25.00 | 100.00 | 20.0 | 3.000 | 60.0 | not reached "
        "| not reached | not reached | no |",
        "",
        "- statistics leave out the first 1 step(s) (round(s)) of each run as warm-up",
        "- " + POOLED,
        "- sent = bytes a computing rank put on the wire per step (round), indices, norms and lengths included "
        "(fedavg: the model downloads too); of dense = compressed bytes / the float32 bytes they replace "
        "(compress/sent_bytes / compress/dense_bytes: the ring's buckets, fedavg's client uploads)",
        "- the sparse and quantised methods are all-gathered, so each rank forwards p - 1 payloads: their share of "
        "dense grows with p (top-k R at p ranks: about p R)",
        "- compression = compress + decompress time (timing/compress), not communication; residual norm = the "
        "error-feedback memory's L2 norm after the last step (0: no error feedback)",
        "- oversubscribed: more busy threads than cores on a host; times include waiting for a core",
        "- to target: steps (rounds) trained, training seconds (sum of step times; evaluation left out) and bytes "
        "moved by all ranks until the first evaluation at or above the target; n counts the runs that reached it",
    ]
    assert compression_table([dense, topk], 1).name == "compression"
    assert len(compression_table([dense, topk], 1).columns) == 13


def test_overlap_and_fedavg_tables_whole_as_a_reader_sees_them(tmp_path):
    """The overlap run of the test above; FedAvg with an 80 % target reached at round 3 (index 2) after
    100 + 2 x 0.1 = 100.2 s and 3 ranks x 2 layers x 1000 B x 3 rounds = 0.017 MiB."""
    import h5py

    from analysis.views.overlap import overlap_table
    from tests.analysis_fixtures import with_evals

    exposed = {"timing/exposed": (np.full((2, 5), 0.01), "s")}
    over = ring_run(tmp_path / "o.h5", 2, 0.1, comm_s=0.04, fwd_s=0.02, bwd_s=0.05, opt_s=0.01,
                    cfg={"overlap": True}, extra=exposed)  # fmt: skip
    assert overlap_table([over], 1).markdown().splitlines()[4:] == [
        "| mlp | 2 | ring --overlap | yes | 1 | 100.00 | 80.0 | 10.0 | 30.0 | 10.0 | 75.0 | no | o.h5 |",
        "",
        "- statistics leave out the first 1 step(s) (round(s)) of each run as warm-up",
        "- " + POOLED,
        "- per computing rank, sums over measured steps as a share of the step time: computing = forward + backward "
        "+ optimizer; communication not overlapped = the part the training thread waited for; overlapped = "
        "communication that ran during the backward pass (not part of the step sum); free = step - computing - not "
        "overlapped (data, packing, waiting on peers, Python)",
        "- overlap = overlapped / all communication (Holistic Trace Analysis, get_comm_comp_overlap); a run without "
        "--overlap has none",
        "- an overlapped run has one more busy thread per rank (ring --overlap: our communication thread; ddp: "
        "gloo's) that needs a core of its own to hide anything",
        "- oversubscribed: more busy threads than cores on a host; times include waiting for a core",
    ]
    run = fed(tmp_path)
    with h5py.File(run.path, "a") as f:
        f["fedavg/aggregator_receive"][0, :] = 0.02
    run = with_evals(run.path, [0, 2], [0.5, 0.9])
    lines = fedavg_table([run], 1, target=0.8).markdown().splitlines()
    assert lines[2].endswith("| late | rounds to 80 % | train s to 80 % | MiB to 80 % | runs |")
    assert lines[4] == (
        "| 3 | fedavg | 2 | 1.00 | 1 | – | 8 | iid | – | 0.00 | avg | 1 | 4 | 0.01 | 100.0 | 240 | 20.0 | 90.0 "
        "| 0.0 | 0.0 | 3.0 | 100.20 | 0.02 | f.h5 |"
    )
    assert lines[6:] == [
        "- statistics leave out the first 1 step(s) (round(s)) of each run as warm-up",
        "- " + POOLED,
        "- round = the aggregator's time from sampling to the last update folded; samples/s = samples the sampled "
        "clients trained (E epochs or T steps of their batches) / round time; MiB per round = model downloads + "
        "uploads, all ranks",
        "- dropped, late: clients per run, summed over rounds",
        "- to target: steps (rounds) trained, training seconds (sum of step times; evaluation left out) and bytes "
        "moved by all ranks until the first evaluation at or above the target; n counts the runs that reached it",
    ]
    assert fedavg_table([run], 1).name == "fedavg" and len(fedavg_table([run], 1).notes) == 4


def test_strategy_table_reads_staleness_blocking_and_the_loss_tail_of_a_ps_run(tmp_path):
    """ps async with 1 server and 2 workers, 20 steps: staleness (0, 1, 3) -> mean 1.33, max 3; time blocked =
    barrier wait (0.01 s x 19 measured steps) + replies held back (0.5 + 0.7 s per worker over all steps, mean
    0.6 s); final loss = mean over the last 10 % of steps (2 of 20: losses 1.0 and 3.0 on the workers, the
    server's zeros left out); a FedAvg run (rounds) is not in this table."""
    from analysis.views.core import blocked_s, final_loss, staleness, strategy_table
    from tests.analysis_fixtures import ps_run

    loss = np.zeros((3, 20))
    loss[1:, :18], loss[1:, 18:] = 9.0, [[1.0, 1.0], [3.0, 3.0]]
    extra = {
        "ps/updates/staleness": (np.array([0.0, 1.0, 3.0]), "updates"),
        "ps/blocked": (np.array([[0.0] * 20, [0.025] * 20, [0.035] * 20]), "s"),
        "metrics/loss": (loss, "1"),
    }
    run = ps_run(tmp_path / "p.h5", 1, 2, 0.1, steps=20, wait_s=0.01, cfg={"ps_mode": "async"}, extra=extra)
    assert staleness(run, np.mean) == pytest.approx(4 / 3) and staleness(run, np.max) == 3.0
    assert blocked_s(run, 1) == pytest.approx(19 * 0.01 + 0.6)
    assert final_loss(run) == pytest.approx(2.0)
    assert np.isnan(staleness(ring_run(tmp_path / "r.h5", 2, 0.1), np.mean))
    row = strategy_table([run, fed(tmp_path)], 1).rows
    assert len(row) == 1 and [round(row[0][i].mean, 4) for i in (6, 7, 8, 9)] == [0.79, 1.3333, 3.0, 2.0]
    line = strategy_table([run], 1).markdown().splitlines()[4]
    assert line == "| mlp | 3 | ps --ps-mode async | 1 | 200 | 0.0 | 0.790 | 1.33 | 3 | 2.000 | – | p.h5 |"


def test_every_statistic_leaves_out_exactly_one_warm_up_step_by_default(tmp_path):
    """Steps of 100 (warm-up), 0.4, 0.3, 0.1, 0.1 s with communication 0.2 s in step 1 only: left out by default is
    step 0 alone (the --warmup default of the CLI), so the defaults equal warmup=1 and differ from warmup=2."""
    from analysis.models.costmodel import Fit
    from analysis.models.prediction import compute_per_step, error_at_own_size, predict
    from analysis.stats.groups import speedups
    from analysis.stats.metrics import comm_split, layer_split, overlap_split, phase_totals, row_times, step_stats

    step = np.array([[100.0, 0.4, 0.3, 0.1, 0.1]] * 2)
    comm = np.zeros((2, 5, 2))
    comm[:, 1] = 0.1  # 0.2 s over two layers in step 1
    run = ring_run(tmp_path / "w.h5", 2, 0.1, extra={"timing/step": (step, "s"), "timing/comm": (comm, "s")})
    fit = Fit.given(1e-6, 1e-9)
    ranks = np.array([0, 1])
    for default, one, two in [
        (row_times(run), row_times(run, 1), row_times(run, 2)),
        (step_stats(run).samples_per_s, step_stats(run, 1).samples_per_s, step_stats(run, 2).samples_per_s),
        (comm_split(run).comm_s, comm_split(run, 1).comm_s, comm_split(run, 2).comm_s),
        (phase_totals(run.data, ranks)["step"], phase_totals(run.data, ranks, 1)["step"],
         phase_totals(run.data, ranks, 2)["step"]),
        (overlap_split(run).__dict__, overlap_split(run, 1).__dict__, overlap_split(run, 2).__dict__),
        (layer_split(run)[0]["comm_s"], layer_split(run, 1)[0]["comm_s"], layer_split(run, 2)[0]["comm_s"]),
        (compute_per_step(run), compute_per_step(run, 1), compute_per_step(run, 3)),
        (predict(run, fit, [4])[0].step_s, predict(run, fit, [4], 1)[0].step_s, predict(run, fit, [4], 3)[0].step_s),
        (error_at_own_size(run, fit), error_at_own_size(run, fit, 1), error_at_own_size(run, fit, 3)),
        (speedups([run])[0]["samples_per_s"].mean, speedups([run], 1)[0]["samples_per_s"].mean,
         speedups([run], 2)[0]["samples_per_s"].mean),
    ]:  # fmt: skip
        assert str(default) == str(one) and str(default) != str(two)


def test_files_without_optional_records_read_as_documented(tmp_path):
    """No roles: every rank computes (peers); no core count: not known to be oversubscribed; no threads per rank:
    one; no ps_mode: sync (lock-step); a layer with no communication has bandwidth 0, not a division by zero; a
    run with no per-rank batch trained 0 samples."""
    import h5py

    from analysis.data.load import load
    from analysis.stats.metrics import (
        computing_ranks,
        layer_split,
        oversubscription,
        samples_per_row,
        schedule,
        step_stats,
    )  # fmt: skip
    from tests.analysis_fixtures import ps_run

    assert computing_ranks(None, 3).tolist() == [0, 1, 2] and computing_ranks(None, 3).dtype.kind == "i"
    assert oversubscription({"hosts": ["a", "a", "a"]}) == (False, 3)
    assert oversubscription({"hosts": ["a", "a", "a"], "cores_per_host": 2}) == (True, 3)
    assert oversubscription({"hosts": ["a", "a"], "cores_per_host": 2, "threads_per_rank": 2}) == (True, 2)
    assert oversubscription({"cores_per_host": 2}) == (False, 1)
    sync = ps_run(tmp_path / "s.h5", 1, 2, 0.1)
    with h5py.File(sync.path, "a") as f:
        import json

        f.attrs["config"] = json.dumps({k: v for k, v in json.loads(f.attrs["config"]).items() if k != "ps_mode"})
        del f.attrs["per_rank_batch"]
    sync = load(sync.path)
    assert schedule(sync) == "lockstep" and step_stats(sync, 1).samples_per_s == 0.0
    quiet = ring_run(tmp_path / "q.h5", 2, 0.1)
    assert [r["bandwidth_Bps"] for r in layer_split(quiet, 1)] == [0.0, 0.0]
    done = {"timing/steps_done": (np.array([0, 5, 3], dtype=np.int64), "steps")}
    asyn = ps_run(tmp_path / "a.h5", 1, 2, 0.1, cfg={"ps_mode": "async"}, extra=done)
    rows = samples_per_row(asyn)
    assert rows.dtype == np.float64 and rows.tolist() == [20.0, 20.0, 20.0, 10.0, 10.0]


WARM = "statistics leave out the first 1 step(s) (round(s)) of each run as warm-up"
POOLED = (
    "n = repeats pooled (runs differing only by seed or by options that change nothing measured, analysis/README.md); "
    "a ± b = mean ± half-width of the 95 % t interval"
)


def test_the_notes_under_speedup_communication_and_strategy_tables(tmp_path):
    """What each table says its numbers are, read as a reviewer reads it (the definitions of analysis/README)."""
    from analysis.views.core import communication_table, speedup_table, strategy_table

    one, two = ring_run(tmp_path / "r1.h5", 1, 0.2), ring_run(tmp_path / "r2.h5", 2, 0.25, comm_s=0.05)
    assert speedup_table([one, two], 1).notes == [
        WARM,
        POOLED,
        "samples/s = samples actually trained per second (lock-step: global batch x measured steps / their summed "
        "time; ps async and ssp: samples / training wall time; fedavg: the sampled clients' samples / round time)",
        "speedup = samples/s ratio; ideal speedup = ratio of computing ranks (servers and the aggregator train "
        "nothing); efficiency = speedup / ideal; – where a workload ran at one rank count only; runs are compared "
        "only at the same threads per rank and oversubscription",
        "oversubscribed: more busy threads than cores on a host; times include waiting for a core",
    ]
    assert communication_table([one, two], 1).notes == [
        WARM,
        POOLED,
        "costs: mean over computing ranks of the sum over measured steps; computation = forward + backward + "
        "optimizer; packing = copies between the model and host buffers (not communication); communication share = "
        "communication / overall",
    ]
    assert strategy_table([one, two], 1).notes == [
        WARM,
        POOLED,
        "time blocked = barrier wait + (ps async/ssp) reply held back, mean over computing ranks; final loss = mean "
        "training loss over the last 10 % of steps; test accuracy at the last evaluation",
    ]
    assert speedup_table([one, two], 2).notes[0] == WARM.replace("first 1", "first 2")
    assert [t.name for t in (speedup_table([one], 1), communication_table([one], 1), strategy_table([one], 1))] == [
        "speedup", "communication", "strategies"]  # fmt: skip


def in_memory_run(attrs: dict, data: dict):
    """A RunResults over plain arrays (no file): the paths that a lazily read file does not take."""
    from analysis.data.load import RunResults

    base = {"strategy": "ring", "config": {"model": "mlp"}, "world_size": 2, "roles": ["peer", "peer"],
            "per_rank_batch": 10}  # fmt: skip
    return RunResults("mem.h5", base | attrs, data)


def test_plain_arrays_reduce_like_lazy_files_and_quartiles_by_hand():
    """per_layer_mean over plain arrays: the mean over the given ranks and the rows after warm-up, per layer;
    step quartiles of 0.1, 0.2, 0.3, 0.4 s by linear interpolation (numpy's default, as the paper tables' IQR):
    0.175 and 0.325; a file with no steps has no step time and no throughput."""
    from analysis.stats.metrics import per_layer_mean, per_row, step_stats

    comm = np.zeros((3, 3, 2))
    comm[1, 1:] = [[1.0, 2.0], [3.0, 4.0]]
    comm[2, 1:] = [[5.0, 6.0], [7.0, 8.0]]
    data = {"timing/comm": comm}
    assert per_layer_mean(data, "timing/comm", np.array([1, 2]), 1).tolist() == [4.0, 5.0]
    assert per_layer_mean(data, "timing/comm", np.array([1]), 2).tolist() == [3.0, 4.0]
    assert per_row(data, "timing/comm")[1].tolist() == [0.0, 3.0, 7.0]
    steps = np.array([[9.0, 0.1, 0.2, 0.3, 0.4]] * 2)
    st = step_stats(in_memory_run({}, {"timing/step": steps}), 1)
    assert (st.median_s, st.p25_s, st.p75_s, st.steps) == pytest.approx((0.25, 0.175, 0.325, 4))
    assert st.samples_per_s == pytest.approx(20 * 4 / 1.0)
    empty = step_stats(in_memory_run({}, {"timing/step": np.zeros((2, 0))}), 1)
    assert (empty.median_s, empty.p25_s, empty.p75_s, empty.samples_per_s) == (0.0, 0.0, 0.0, 0.0)


def test_buckets_of_a_run_come_from_its_record_then_its_options():
    """The buckets a ring run recorded; else DDP's recorded --bucket-mb, else the config's, by the bucketing rule
    (a bucket closes once it holds at least --bucket-mb: layers 10 B + 1 MiB, then 1 MiB); else one bucket per
    layer, last first."""
    from analysis.models.overlap import buckets_of

    layers = {"layers/bytes": np.array([2**20, 2**20, 10])}
    recorded = in_memory_run({"strategy_info": {"buckets": [[2, 1], [0]]}}, layers)
    assert buckets_of(recorded) == [[2, 1], [0]]
    ddp = in_memory_run({"strategy_info": {"bucket_mb": 1.0}, "config": {"bucket_mb": 4.0}}, layers)
    assert buckets_of(ddp) == [[2, 1], [0]]  # what DDP recorded, not the config's 4 MiB (one bucket)
    configured = in_memory_run({"config": {"bucket_mb": 0.5}}, layers)
    assert buckets_of(configured) == [[2, 1], [0]]
    assert buckets_of(in_memory_run({}, layers)) == [[2], [1], [0]]


def test_fedavg_samples_per_round_edges_by_hand():
    """A client of 1 sample trains one batch of 1; T = 1 local step is one batch; rows of rounds past the file's
    last are ignored; a round without clients trained 0; without B or E in the config: one sample per batch and
    one epoch."""
    from analysis.stats.metrics import fedavg_samples_per_round

    rows = np.array([(1, 0, 1, 0), (1, 1, 21, 0), (2, 0, 1, 2), (4, 1, 21, 0)], dtype=np.float64)  # rounds from 1
    data = {f"fedavg/clients/{k}": rows[:, i] for i, k in enumerate(("round", "client", "samples", "status"))}
    data["timing/step"] = np.zeros((2, 3))
    run = in_memory_run({"config": {"batch_size": 8, "local_epochs": 2}}, data)
    assert fedavg_samples_per_round(run).tolist() == [2 * 1 + 2 * 16, 2 * 1, 0.0]
    one_step = in_memory_run({"config": {"batch_size": 8, "local_epochs": 2, "local_steps": 1}}, data)
    assert fedavg_samples_per_round(one_step).tolist() == [1 + 8, 1, 0.0]
    bare = in_memory_run({"config": {}}, data)
    assert fedavg_samples_per_round(bare).tolist() == [1 + 21, 1, 0.0]  # B = 1: every sample (B = 2 would give 20)
    within = {k: v[:3] for k, v in data.items() if k.startswith("fedavg/clients/")} | {"timing/step": np.zeros((2, 3))}
    assert fedavg_samples_per_round(in_memory_run({"config": {}}, within)).tolist() == [22, 1, 0.0]  # round 3: none


def test_fit_description_prints_every_digit_it_claims():
    """alpha 1.5 s (+- 0.5), beta 2.5 s/B (+- 0.25) in us and ns/B; a link of 1234.567 GB/s to three decimals; a
    50 % median fit error."""
    from analysis.models.costmodel import AlgorithmFit, Fit

    slow = AlgorithmFit(1.5, 2.5, 0.5, 0.25, 8, 1024, 3, 0.5)
    fast = AlgorithmFit(1e-6, 1 / 1.234567e12, 0.0, 0.0, 8, 1024, 3, 0.125)
    lines = Fit({"ring": slow, "doubling": fast}, "hand").describe()
    assert lines == [
        "fitted from hand",
        "ring: alpha = 1500000.00 +- 500000.00 us, beta = 2500000000.0000 +- 250000000.0000 ns/B (0.000 GB/s), "
        "range 8 B-1 KiB, 3 sizes, median fit error 50.0 %",
        "doubling: alpha = 1.00 +- 0.00 us, beta = 0.0008 +- 0.0000 ns/B (1234.567 GB/s), range 8 B-1 KiB, 3 sizes, "
        "median fit error 12.5 %",
    ]
    assert Fit({"ring": slow}).for_message(1 << 20) is slow and Fit({"doubling": fast}).for_message(8) is fast
    assert Fit({"ring": slow, "doubling": fast}).for_message(128 * 1024) is slow  # the kernels' switch
    assert Fit({"ring": slow, "doubling": fast}).for_message(128 * 1024 - 1) is fast
    given = Fit.given(1e-6, 1e-9).algorithms["ring"]
    assert (given.lo_bytes, given.hi_bytes, given.points, given.error) == (0, math.inf, 0, 0.0)


def test_predictions_of_degenerate_and_sparse_files():
    """A run of zero-time steps with a zero-cost link: step 0, no share, no speedup (no division by zero); a
    one-step file measures its only step even with warm-up 1; localsgd without tau recorded: tau 1; ps without
    a server count: 1, and at p = 1 still one worker; fedavg without sampled counts: one client per round."""
    from analysis.models.costmodel import Fit
    from analysis.models.prediction import comm_per_step, compute_per_step, error_at_own_size, predict

    layers = {"layers/bytes": np.array([1000, 3000], dtype=np.int64), "layers/name": np.array(["a", "b"])}
    zeros = {"timing/step": np.zeros((2, 3)), "timing/comm": np.zeros((2, 3, 2)), "timing/wait": np.zeros((2, 3))}
    idle = in_memory_run({}, zeros | layers)
    free = Fit.given(0.0, 0.0)
    first, second = predict(idle, free, [2, 4], 1)
    assert (first.step_s, first.share, first.speedup, second.speedup) == (0.0, 0.0, 0.0, 0.0)
    measured, predicted, err = error_at_own_size(idle, free, 1)
    assert (measured, predicted) == (0.0, 0.0) and math.isnan(err)
    one = in_memory_run({}, {"timing/step": np.array([[0.5], [0.7]]), "timing/comm": np.full((2, 1, 2), 0.1),
                             "timing/wait": np.zeros((2, 1))} | layers)  # fmt: skip
    assert compute_per_step(one, 1) == pytest.approx(0.5)  # max over ranks of 0.3 and 0.5
    fit = Fit.given(1e-6, 1e-9)
    ring = comm_per_step(in_memory_run({}, layers), 2, fit)
    local = in_memory_run({"strategy": "localsgd"}, layers)
    assert comm_per_step(local, 2, fit) == pytest.approx(ring)
    ps = in_memory_run({"strategy": "ps", "roles": ["server", "worker"]}, layers)
    assert comm_per_step(ps, 1, fit) == pytest.approx(2 * 1 * (2e-6 + 4000e-9))
    fed_run = in_memory_run({"strategy": "fedavg", "roles": ["aggregator", "client_host"]}, layers)
    assert comm_per_step(fed_run, 2, fit) == pytest.approx(2 * 1 * (2e-6 + 4000e-9))


def test_compression_and_overlap_helpers_at_their_edges():
    """Per computing rank and measured step: bytes sent over 2 steps (4000 + 2000 B: 3000 B per step on average;
    the server's row left out); the share of dense over the measured steps only; no dense record: 1; zero dense:
    NaN; compression over a zero step: NaN; the residual is the last row's, over computing ranks; an overlap
    share of a zero step: NaN."""
    from analysis.views.compress import bytes_per_step, compress_share, dense_ratio, residual
    from analysis.views.overlap import _share

    roles = {"roles": ["server", "worker", "worker"], "strategy": "ps"}
    sent = np.zeros((3, 3, 1))
    sent[0] = 99.0
    sent[1:, 1:, 0] = [[4000.0, 2000.0], [4000.0, 2000.0]]
    dense = np.full((3, 3, 1), 8000.0)
    dense[:, 0] = 1.0  # the warm-up step's, left out
    run = in_memory_run(roles, {"timing/comm_bytes": sent, "compress/sent_bytes": sent, "compress/dense_bytes": dense,
                                "timing/step": np.full((3, 3), 0.1)})  # fmt: skip
    assert bytes_per_step(run, 1) == 3000.0 and dense_ratio(run, 1) == pytest.approx(12000 / 32000)
    assert dense_ratio(in_memory_run(roles, {}), 1) == 1.0
    zero = in_memory_run(roles, {"compress/dense_bytes": np.zeros((3, 3, 1)), "compress/sent_bytes": sent})
    assert math.isnan(dense_ratio(zero, 1))
    idle = in_memory_run(roles, {"timing/step": np.zeros((3, 3)), "timing/compress": np.zeros((3, 3, 1))})
    assert math.isnan(compress_share(idle, 1)) and math.isnan(_share("free_s", 1)(idle))
    norm = np.array([[9.0, 9.0, 9.0], [1.0, 2.0, 3.0], [1.0, 2.0, 5.0]])
    assert residual(in_memory_run(roles, {"compress/residual_norm": norm})) == 4.0
    assert residual(in_memory_run(roles, {})) == 0.0


def test_compression_and_overlap_tables_choose_their_runs(tmp_path):
    """Compression: overlapped runs and strategies without --compress (ddp) stay out, error feedback off reads
    "off", blocks are ordered by model, and the warm-up passed reaches every column. Overlap: only lock-step runs,
    ordered by model."""
    from analysis.views.compress import compression_table
    from analysis.views.overlap import overlap_table
    from tests.analysis_fixtures import write_run

    off = {"strategy_info": {"compress": "sign", "error_feedback": False}}
    runs = [
        ring_run(tmp_path / "z.h5", 2, 0.1, cfg={"model": "zmodel"}),
        ring_run(tmp_path / "zs.h5", 2, 0.1, cfg={"model": "zmodel", "compress": "sign"}, attrs=off),
        ring_run(tmp_path / "a.h5", 2, 0.1, cfg={"model": "amodel"}),
        ring_run(tmp_path / "as.h5", 2, 0.1, cfg={"model": "amodel", "compress": "sign"}, attrs=off),
        ring_run(tmp_path / "o.h5", 2, 0.1, cfg={"model": "amodel", "compress": "sign", "overlap": True}),
        write_run(tmp_path / "d.h5", ["peer"] * 2, 0.1, strategy="ddp", cfg={"compress": "sign"}),
    ]
    table = compression_table(runs, 1)
    expected = [("amodel", "none", "-"), ("amodel", "sign", "off"), ("zmodel", "none", "-"), ("zmodel", "sign", "off")]
    assert [(r[0], r[3], r[4]) for r in table.rows] == expected
    slow = ring_run(tmp_path / "w.h5", 2, 0.1, cfg={"model": "w", "compress": "fp16"},
                    extra={"timing/step": (np.array([[9.0, 9.0, 0.1, 0.1, 0.1]] * 2), "s")})  # fmt: skip
    base = ring_run(tmp_path / "wb.h5", 2, 0.1, cfg={"model": "w"})
    medians = [compression_table([base, slow], w).rows[1][8].mean for w in (1, 2)]
    assert medians == [pytest.approx(0.1), pytest.approx(0.1)] and compression_table([base, slow], 1).rows[1][8].n
    assert [r[0] for r in overlap_table(runs[::-1] + [fed(tmp_path)], 1).rows][:2] == ["amodel", "amodel"]
    assert all(r[2] != "fedavg" for r in overlap_table(runs + [fed(tmp_path)], 1).rows)


def test_model_table_passes_its_warm_up_and_skips_rounds_without_stopping(tmp_path):
    """A FedAvg run first does not stop the table; the warm-up given reaches measured and predicted steps (step 1
    of 1.0 s is measured with warm-up 1, not 2); the provenance table is named and titled for the report; ddp and
    --overlap runs count as overlapped, a plain ring does not."""
    from analysis.data.facts import overlapped
    from analysis.models.costmodel import Fit
    from analysis.models.overlap import predicted_exposed
    from analysis.views.model import model_table, provenance_table
    from tests.analysis_fixtures import write_run

    steps = np.array([[9.0, 1.0, 1.0, 0.1, 0.1]] * 2)
    run = ring_run(tmp_path / "r.h5", 2, 0.1, extra={"timing/step": (steps, "s")})
    fit = Fit.given(1e-6, 1e-9)
    one, three = (model_table([fed(tmp_path), run], fit, [4], w).rows for w in (1, 3))
    assert len(one) == 1 and one[0][3] == pytest.approx(0.55) and three[0][3] == pytest.approx(0.1)
    assert one[0][4] == pytest.approx(0.55, abs=1e-3) and three[0][4] == pytest.approx(0.1, abs=1e-3)
    table = provenance_table([run])
    assert (table.name, table.title) == ("provenance", "Runs behind this report")
    ddp = write_run(tmp_path / "d.h5", ["peer"] * 2, 0.1, strategy="ddp")
    assert overlapped(ddp) and not overlapped(run) and overlapped(ring_run(tmp_path / "o.h5", 2, 0.1,
                                                                              cfg={"overlap": True}))  # fmt: skip
    assert predicted_exposed(ddp, 2, fit) == predicted_exposed(ddp, 2, fit, 1)


def test_every_ratio_of_an_all_zero_file_is_zero_or_nan_never_an_error():
    """A file whose rows are all zero (a run stopped before its first step finished): shares and rates are 0 or
    NaN as documented, not a ZeroDivisionError or inf."""
    from analysis.models.prediction import compute_per_step
    from analysis.stats.metrics import comm_split, comm_to_compute, phase_totals, step_stats
    from analysis.views.compress import bytes_per_step, compress_share
    from analysis.views.core import final_loss
    from analysis.views.fl import _mean_bytes, aggregator_share
    from analysis.views.overlap import _share

    zeros = {name: np.zeros((2, 3)) for name in ("timing/step", "timing/wait", "metrics/loss", "timing/optimizer")}
    zeros |= {name: np.zeros((2, 3, 2)) for name in ("timing/comm", "timing/forward", "timing/backward",
                                                     "timing/compress", "timing/comm_bytes")}  # fmt: skip
    run = in_memory_run({}, zeros)
    assert comm_split(run, 1).share == 0.0 and step_stats(run, 1).samples_per_s == 0.0
    assert comm_to_compute({"comm": 1.0, "forward": 0.5, "backward": 0.4}) == pytest.approx(1 / 0.9)
    assert math.isnan(compress_share(run, 1)) and math.isnan(_share("free_s", 1)(run))
    assert math.isnan(final_loss(run)) and compute_per_step(run, 1) == 0.0 and bytes_per_step(run, 1) == 0.0
    assert phase_totals(in_memory_run({}, zeros | {"timing/step": np.zeros((2, 0))}).data, np.array([0, 1]), 1)[
        "step"] == 0.0  # fmt: skip
    fed_zero = in_memory_run({"strategy": "fedavg", "roles": ["aggregator", "client_host"]},
                             zeros | {"fedavg/aggregator_receive": np.zeros((2, 3))})  # fmt: skip
    assert math.isnan(aggregator_share(fed_zero, "receive", 1))
    rounds = in_memory_run({}, {"timing/comm_bytes": np.array([[[9.0], [1.0], [3.0]]] * 2)})
    assert _mean_bytes(rounds, 1) == 2 * 2.0 and _mean_bytes(rounds, 5) == pytest.approx(2 * 13 / 3)


def test_labels_defaults_and_sentinels_by_hand(tmp_path):
    """strategy_label names --accumulate-steps from 2 and a missing compress as none; the layer table shows 5
    layers by default; a step counts only the runs' computing ranks."""
    from analysis.stats.metrics import compute_ranks, strategy_label
    from analysis.views.core import layers_table

    assert strategy_label(in_memory_run({"config": {"accumulate_steps": 2}}, {})) == "ring --accumulate-steps 2"
    assert strategy_label(in_memory_run({"config": {}}, {})) == "ring"
    six = ring_run(tmp_path / "six.h5", 2, 0.1, layers=6, comm_s=0.06)
    assert len(layers_table([six], 1).rows) == 5
    assert compute_ranks(in_memory_run({"roles": None, "world_size": 3}, {})).tolist() == [0, 1, 2]


def test_remaining_edges_of_metrics_and_partitions():
    """Threads per rank default to one (2 ranks x 1 on 3 cores is fine); a rank list without computing ranks is an
    empty integer index; shards of exactly as many samples as shards are allowed; shards cut the label order
    stably (ties in index order: each part is whole blocks of it); the partition draw is the seed's own stream."""
    from analysis.stats.metrics import computing_ranks, oversubscription
    from bench.workload import partition
    from bench.workload.streams import Salt, stream

    assert oversubscription({"hosts": ["a", "a"], "cores_per_host": 3}) == (False, 2)
    assert computing_ranks(["server"], 1).dtype.kind == "i" and computing_ranks(["server"], 1).size == 0
    assert sorted(np.concatenate(partition.shards(np.array([0, 1, 0, 1]), 2, 2, np.random.default_rng(0)))) == [
        0, 1, 2, 3]  # fmt: skip
    labels = np.array([1, 0] * 20)
    blocks = [set(range(1, 20, 2)), set(range(21, 40, 2)), set(range(0, 19, 2)), set(range(20, 39, 2))]
    for part in partition.shards(labels, 2, 2, np.random.default_rng(3)):
        assert sum(b <= set(part.tolist()) for b in blocks) == 2
    expected = partition.iid(40, 2, stream(5, salt=Salt.PARTITION))
    assert all(np.array_equal(a, b) for a, b in zip(partition.make("iid", labels, 2, 5), expected))


def test_every_table_passes_its_warm_up_to_its_columns(tmp_path):
    """Steps 9 (warm-up), 1.0, 1.0, 0.1, 0.1 s: with warm-up 3 the medians and throughputs are those of the last two
    steps alone, in every table that shows them (one definition, one warm-up)."""
    from analysis.stats.metrics import comm_split, overlap_split, step_stats
    from analysis.views.compress import bytes_per_step, compression_table
    from analysis.views.core import communication_table, speedup_table, strategy_table
    from analysis.views.overlap import overlap_table

    steps = (np.array([[9.0, 1.0, 1.0, 0.1, 0.1]] * 2), "s")
    comm = np.zeros((2, 5, 2))
    comm[:, 1:3] = 0.2
    sent = np.full((2, 5, 2), 1000, np.int64)
    sent[:, 1:3] = 5000
    extra = {"timing/step": steps, "timing/comm": (comm, "s"), "timing/comm_bytes": (sent, "bytes"),
             "timing/exposed": (np.zeros((2, 5)), "s")}  # fmt: skip
    run = ring_run(tmp_path / "v.h5", 2, 0.1, cfg={"compress": "fp16"}, extra=extra)
    base = ring_run(tmp_path / "b.h5", 2, 0.1, extra={"timing/step": steps})
    three = step_stats(run, 3)
    assert speedup_table([run], 3).rows[0][7].mean == three.median_s == pytest.approx(0.1)
    assert speedup_table([run], 3).rows[0][8].mean == pytest.approx(three.samples_per_s)
    assert communication_table([run], 3).rows[0][5].mean == pytest.approx(comm_split(run, 3).comm_s) == 0.0
    strategy = strategy_table([run], 3).rows[0]
    assert strategy[4].mean == pytest.approx(three.samples_per_s) and strategy[5].mean == 0.0
    assert strategy[6].mean == pytest.approx(comm_split(run, 3).wait_s)
    compressed = compression_table([base, run], 3).rows[1]
    assert compressed[6].mean == pytest.approx(bytes_per_step(run, 3)) == 2000.0 and compressed[8].mean == 0.1
    overlapped = ring_run(tmp_path / "o.h5", 2, 0.1, cfg={"overlap": True}, extra=extra)
    row = overlap_table([overlapped], 3).rows[0]
    assert (
        row[5].mean == pytest.approx(0.1)
        and row[10].n == 0
        or row[10].mean == overlap_split(overlapped, 3).overlap_percent
    )


def test_sparse_files_and_sampling_streams_at_scale(tmp_path):
    """A one-step file keeps its step under warm-up 1; a
    one-round FedAvg file's bytes; decoupled rows without a batch record train 0; candidates and device speeds
    of 40 clients from their documented streams; the shard error names both counts; FedLAMA leaves T = 1 runs out
    only if no FedLAMA run shares their setting."""
    from analysis.stats.metrics import row_times, samples_per_row
    from analysis.views.fl import _mean_bytes
    from bench.strategies.fedavg.sampling import sample_candidates, speed_factor
    from bench.workload import partition
    from bench.workload.streams import Salt, stream

    one = in_memory_run({}, {"timing/step": np.array([[0.5], [0.7]])})
    assert row_times(one, 1).tolist() == [0.7]
    single = in_memory_run({}, {"timing/comm_bytes": np.array([[[4.0]], [[6.0]]])})
    assert _mean_bytes(single, 1) == 10.0
    decoupled = in_memory_run({"strategy": "ssp", "config": {"ps_mode": "ssp"}, "per_rank_batch": None},
                              {"timing/step": np.zeros((2, 2)), "timing/steps_done": np.array([2, 2])})  # fmt: skip
    del decoupled.attrs["per_rank_batch"]
    assert samples_per_row(decoupled).tolist() == [0.0, 0.0]
    sizes = np.arange(1.0, 41.0)
    drawn = np.sort(stream(7, 3, salt=Salt.SAMPLE).choice(40, size=10, replace=False, p=sizes / sizes.sum()))
    assert np.array_equal(sample_candidates(7, 3, sizes, 10), drawn)
    expected = [max(1.0, float(np.exp(0.5 * stream(7, k, 2**31 - 1, salt=Salt.STRAGGLER).standard_normal())))
                for k in range(40)]  # fmt: skip
    assert [speed_factor(7, k, 0.5) for k in range(40)] == expected and max(expected) > 1.0
    with pytest.raises(ValueError, match="^6 shards need at least that many samples, have 5$"):
        partition.shards(np.zeros(5, int), 3, 2, np.random.default_rng(0))


def test_table_names_warm_ups_and_the_worst_repeat(tmp_path):
    """The model and overlap tables keep the names the report's files use; the FedAvg table passes its warm-up
    (rounds 0.1, 0.1, 0.5 s: median 0.1 s with warm-up 1, 0.3 s with warm-up 2); of two repeats, the note names
    the worse attack check."""
    import h5py

    from analysis.data.load import load
    from analysis.models.costmodel import Fit
    from analysis.views.fl import byzantine_note
    from analysis.views.model import model_table
    from analysis.views.overlap import overlap_table

    run = ring_run(tmp_path / "r.h5", 2, 0.1)
    assert model_table([run], Fit.given(1e-6, 1e-9), [4], 1).name == "model"
    assert overlap_table([run], 1).name == "overlap"
    rounds = fed(tmp_path, "w.h5")
    with h5py.File(rounds.path, "a") as f:
        f["timing/total"][0, :] = [9.0, 0.1, 0.1, 0.5]  # timing/step in memory
    median = fedavg_table([load(rounds.path)], 2).rows[0][14].mean
    assert median == pytest.approx(0.3) and fedavg_table([load(rounds.path)], 1).rows[0][14].mean == 0.1
    checks = [
        {"rule": "krum", "attackers_max": 2, "tolerated_min": 1, "rounds": 4, "rounds_exceeded": n} for n in (1, 3)
    ]
    paths = []
    for i, check in enumerate(checks):
        r = fed(tmp_path, f"k{i}.h5", aggregator="krum:1", seed=i)
        with h5py.File(r.path, "a") as f:
            import json

            f.attrs["byzantine_check"] = json.dumps(check)
        paths.append(load(r.path))
    from analysis.stats.groups import repeat_groups

    (group,) = repeat_groups(paths)
    assert "in 3 of 4 rounds" in byzantine_note(group)


def test_links_table_and_figure_show_runs_on_several_nodes_only(tmp_path):
    """Two ranks on two nodes, each sending 1,000 bytes per layer and step (2 layers): 4,000 bytes per step, i.e.
    0.003815 MiB; rank 0 sends 500 per layer to the other node, rank 1 none: across = 1,000 / 4,000 = 25 %. A run
    without nodes (one node, or written before them) has no row and no bar."""
    from analysis.figures.nodes import links_plot
    from analysis.views.nodes import links_table

    across = np.zeros((2, 5, 2), dtype=np.int64)
    across[0] = 500
    spread = ring_run(tmp_path / "two.h5", 2, 0.1, attrs={"nodes": [0, 1]},
                      extra={"timing/comm_bytes_across": (across, "bytes")})  # fmt: skip
    single = ring_run(tmp_path / "one.h5", 2, 0.1, cfg={"seed": 9, "steps": 6})
    table = links_table([spread, single], warmup=1)
    assert len(table.rows) == 1 and table.rows[0][:3] == ["mlp", 2, 2]
    mib, share = table.rows[0][5], table.rows[0][6]
    assert mib.mean == pytest.approx(4000 / 2**20) and share.mean == pytest.approx(0.25)
    assert [p.name for p in links_plot([spread, single], tmp_path / "figs")] == ["links.png", "links.pdf"]
    assert links_plot([single], tmp_path / "none") == [] and links_table([single], 1).empty


def test_accuracy_bands_stop_at_100_and_0_percent(tmp_path):
    """Three repeats ending at 0.9, 1.0 and 1.0 (mean 0.967, half-width t(0.975, 2) x 0.0577 / sqrt(3) = 0.143):
    the band would reach 111 %; an accuracy cannot, so it stops at 100 %. Mutation caught: the band unclipped."""
    from analysis.figures.groups import accuracy_figure
    from tests.analysis_fixtures import with_evals

    for seed in range(3):
        ring_run(tmp_path / f"r{seed}.h5", 2, 0.1, cfg={"seed": seed})
    runs = [with_evals(tmp_path / f"r{s}.h5", [1, 4], [0.3, a]) for s, a in enumerate((0.9, 1.0, 1.0))]
    band = accuracy_figure(runs).axes[0].collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() == pytest.approx(100.0) and band.min() >= 0.0

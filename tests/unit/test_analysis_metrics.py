"""analysis.stats.metrics and analysis.stats.groups on hand-made files with servers, an aggregator, unequal per-rank
times, decoupled runs and threads per rank: each test names the wrong definition it is there to catch."""

import numpy as np
import pytest
from scipy import stats

from analysis.stats.groups import repeat_groups, speedups
from analysis.stats.metrics import (
    comm_split,
    compute_ranks,
    layer_split,
    oversubscribed,
    phase_totals,
    row_times,
    step_stats,
)
from tests.analysis_fixtures import fedavg_run, ps_run, ring_run, write_run


def test_step_is_the_slowest_computing_rank_not_the_mean(tmp_path):
    run = ring_run(tmp_path / "a.h5", 3, step_s=[0.2, 0.5, 0.3])  # catches: mean over ranks
    st = step_stats(run, warmup=1)
    assert st.median_s == pytest.approx(0.5) and st.steps == 4
    assert st.samples_per_s == pytest.approx(3 * 10 / 0.5)


def test_servers_are_not_computing_ranks(tmp_path):
    run = ps_run(tmp_path / "ps.h5", servers=2, workers=2, step_s=[9.0, 9.0, 0.4, 0.2])
    assert compute_ranks(run).tolist() == [2, 3]  # catches: servers counted as computing
    st = step_stats(run, warmup=1)
    assert st.median_s == pytest.approx(0.4)  # a server's 9 s rows are no step of training
    assert st.samples_per_s == pytest.approx(2 * 10 / 0.4)


def test_speedup_and_efficiency_count_computing_ranks(tmp_path):
    runs = [
        ps_run(tmp_path / "w2.h5", 1, 2, step_s=0.5),
        ps_run(tmp_path / "w4.h5", 1, 4, step_s=0.5),
    ]
    rows = {r["compute_ranks"]: r for r in speedups(runs)}
    assert rows[4]["speedup"].mean == pytest.approx(2.0)
    assert rows[4]["efficiency"].mean == pytest.approx(1.0)  # catches: ideal in world ranks (5/3)
    assert rows[4]["baseline_ranks"] == 2


def test_single_rank_count_has_no_speedup(tmp_path):
    rows = speedups([ring_run(tmp_path / "a.h5", 2, 0.5)])
    assert rows[0]["speedup"] is None and rows[0]["efficiency"] is None


def test_weak_and_strong_scaling(tmp_path):
    weak = speedups([ring_run(tmp_path / f"p{p}.h5", p, s) for p, s in ((1, 0.2), (2, 0.25), (4, 0.4))])
    rows = {r["ranks"]: r for r in weak}
    assert rows[2]["speedup"].mean == pytest.approx(2 * 0.2 / 0.25) and rows[4]["efficiency"].mean == pytest.approx(0.5)
    strong = {"scaling": "strong", "global_batch_size": 40}
    runs = [
        ring_run(tmp_path / "s2.h5", 2, 0.4, batch=20, cfg=strong),
        ring_run(tmp_path / "s4.h5", 4, 0.25, batch=10, cfg=strong),
        ring_run(tmp_path / "other.h5", 4, 0.1, cfg={"lr": 0.5}),
    ]
    rows = {r["file"]: r for r in speedups(runs)}
    assert rows["s4.h5"]["speedup"].mean == pytest.approx(0.4 / 0.25)  # T(p0) / T(p)
    assert rows["other.h5"]["speedup"] is None  # its own workload, one rank count


def test_lockstep_throughput_counts_every_measured_step(tmp_path):
    """localsgd with tau = 4: three local steps of 0.1 s and an averaging step of 0.5 s (step 0, warm-up, left out).
    Samples/s = 2 ranks x 10 x 4 steps / 0.8 s = 100; the median local step would claim 200 (catches: median step
    as the throughput's time, the +41-53 % the report used to show for localsgd)."""
    step = np.array([[100.0, 0.1, 0.1, 0.1, 0.5]] * 2)
    run = ring_run(tmp_path / "l.h5", 2, 0.1, strategy="localsgd", extra={"timing/step": (step, "s")})
    st = step_stats(run, warmup=1)
    assert st.samples_per_s == pytest.approx(2 * 10 * 4 / 0.8) and st.median_s == pytest.approx(0.1)


def test_decoupled_throughput_is_samples_over_wall_time(tmp_path):
    done = {"timing/steps_done": (np.array([10, 6, 4], dtype=np.int64), "steps")}
    run = ps_run(
        tmp_path / "async.h5", 1, 2, step_s=0.1, steps=10, cfg={"ps_mode": "async"}, extra=done,
        attrs={"train_wall_s": 2.0},
    )  # fmt: skip
    # catches: decoupled branch removed (the lock-step formula would give 2 x 10 / 0.1 = 200)
    assert step_stats(run).samples_per_s == pytest.approx((6 + 4) * 10 / 2.0)


def test_fedavg_throughput_counts_the_samples_clients_trained(tmp_path):
    """Round r: clients with n_k = 25 and 70 (B = 32: one batch of 25, two of 32) and a dropped one."""
    rows = []
    for r in range(4):
        rows += [(r, 0, 25, 0), (r, 1, 70, 0 if r % 2 else 2), (r, 2, 50, 1)]  # ok, ok/late, dropped
    cfg = {"clients": 64, "fraction": 0.05, "batch_size": 32, "local_epochs": 2}
    run = fedavg_run(tmp_path / "f.h5", 2, 4, rows, round_s=[0.5, 0.1, 0.2], cfg=cfg)
    per_round = 2 * (25 + 64)  # E x (b floor(n / b)): 25 -> 25, 70 -> 64; dropped 0
    st = step_stats(run, warmup=1)
    assert st.unit == "round" and st.median_s == pytest.approx(0.5)  # the aggregator's round
    # catches: batch x all clients (10 x 64 / 0.5 = 1280)
    assert st.samples_per_s == pytest.approx(3 * per_round / (3 * 0.5))
    assert row_times(run, 1).tolist() == [0.5, 0.5, 0.5]
    # --local-steps T = 3 (cycling the client's data): 3 batches of b = min(32, n) each, whatever E says:
    # 3 x 25 + 3 x 32 per round (catches: epochs counted when the run took steps)
    steps = fedavg_run(tmp_path / "s.h5", 2, 4, rows, round_s=[0.5, 0.1, 0.2], cfg=cfg | {"local_steps": 3})
    assert step_stats(steps, warmup=1).samples_per_s == pytest.approx((3 * 25 + 3 * 32) / 0.5)


def test_oversubscription_counts_threads(tmp_path):
    assert not oversubscribed(ring_run(tmp_path / "a.h5", 2, 0.1, cores=2, threads=1))
    assert oversubscribed(ring_run(tmp_path / "b.h5", 2, 0.1, cores=2, threads=2))  # catches: threads ignored


def test_comm_split_packing_apart_and_share(tmp_path):
    run = write_run(
        tmp_path / "a.h5", ["peer", "peer"], 1.0, comm_s=0.3, pack_s=0.1, fwd_s=0.2, bwd_s=0.2, opt_s=0.05,
        wait_s=0.05,
    )  # fmt: skip
    c = comm_split(run, warmup=1)
    assert c.overall_s == pytest.approx(4.0) and c.comm_s == pytest.approx(4 * 0.3) and c.pack_s == pytest.approx(0.4)
    assert c.compute_s == pytest.approx(4 * 0.45) and c.share == pytest.approx(0.3)
    t = phase_totals(run.data, compute_ranks(run))
    assert t["other"] == pytest.approx(4 * (1.0 - 0.3 - 0.1 - 0.4 - 0.05 - 0.05))


def test_layer_bandwidth_is_bytes_over_time(tmp_path):
    run = ring_run(tmp_path / "a.h5", 2, 1.0, comm_s=0.004)  # 2 layers: 2 ms, 1000 bytes each
    layer = layer_split(run)[0]
    assert layer["bandwidth_Bps"] == pytest.approx(1000 / 0.002)  # catches: inverted


def test_repeats_pool_with_a_student_t_interval(tmp_path):
    steps = (0.20, 0.25, 0.30)
    runs = [ring_run(tmp_path / f"s{i}.h5", 2, s, cfg={"seed": i}) for i, s in enumerate(steps)]
    runs.append(ring_run(tmp_path / "other.h5", 2, 0.2, cfg={"lr": 0.3}))
    groups = repeat_groups(runs)
    assert sorted(g.n for g in groups) == [1, 3]  # catches: seed as part of the workload
    pooled = next(g for g in groups if g.n == 3).pooled(lambda r: step_stats(r).samples_per_s)
    x = [20 / s for s in steps]
    lo, hi = stats.t.interval(0.95, 2, loc=np.mean(x), scale=stats.sem(x))
    assert (
        pooled.mean == pytest.approx(np.mean(x))
        and pooled.low == pytest.approx(lo)
        and pooled.high == pytest.approx(hi)
    )


def test_repeats_of_different_length_are_not_pooled(tmp_path):
    runs = [ring_run(tmp_path / "a.h5", 2, 0.2), ring_run(tmp_path / "b.h5", 2, 0.2, steps=8, cfg={"seed": 1})]
    assert [g.n for g in repeat_groups(runs)] == [1, 1]  # accuracies at different lengths do not pool
    # nor do their throughputs: a different length changes the share of early steps (issue 27)
    assert len({r["group"] for r in speedups(runs)}) == 2


def test_runs_measured_under_other_conditions_are_kept_apart_and_impossible_efficiency_flagged(tmp_path):
    """A 1-rank baseline with 2 threads per rank against 2 ranks of 1 thread (the 45x speedup seen by a user): not
    one scaling group, and the table says why; an oversubscribed run is kept apart likewise. Within one
    environment, an efficiency above 105 % is marked with a dagger and a footnote."""
    from analysis.stats.groups import kept_apart
    from analysis.views.core import speedup_table

    runs = [ring_run(tmp_path / "one.h5", 1, 1.0, threads=2), ring_run(tmp_path / "two.h5", 2, 0.5)]
    assert len({r["group"] for r in speedups(runs)}) == 2 and all(r["speedup"] is None for r in speedups(runs))
    assert kept_apart(runs) == [
        "not compared (measured under different conditions): 2 thread(s) per rank, not oversubscribed: one.h5; "
        "1 thread(s) per rank, not oversubscribed: two.h5"
    ]
    crowded = [ring_run(tmp_path / "c1.h5", 1, 1.0, cores=64), ring_run(tmp_path / "c4.h5", 4, 0.5, cores=2)]
    assert len({r["group"] for r in speedups(crowded)}) == 2
    # weak scaling, 10 samples per rank and step: 2 x 10 / 0.8 s against 10 / 1 s is 2.5x on 2 ranks: 125 %
    fast = [ring_run(tmp_path / "f1.h5", 1, 1.0), ring_run(tmp_path / "f2.h5", 2, 0.8)]
    table = speedup_table(fast, warmup=1)
    files = [row[-1] for row in table.rows]
    assert files == ["f1.h5", "f2.h5 †"]
    assert any(n.startswith("† efficiency above 105 % (f2.h5)") for n in table.notes)
    fine = speedup_table([ring_run(tmp_path / "g1.h5", 1, 1.0), ring_run(tmp_path / "g2.h5", 2, 1.05)], warmup=1)
    assert not any("†" in str(row[-1]) for row in fine.rows)


def test_strategy_label_names_the_options_that_change_a_run():
    from analysis.data.load import RunResults
    from analysis.stats.metrics import strategy_label

    def label(strategy, **config):
        return strategy_label(RunResults("f.h5", {"strategy": strategy, "config": config}))

    assert label("fedavg", fl_algorithm="fedavg", aggregator="mean", byzantine="", selection="uniform") == "fedavg"
    assert label("fedavg", fl_algorithm="scaffold") == "fedavg --fl-algorithm scaffold"
    assert label("fedavg", aggregator="krum:2", byzantine="0.2:sign-flip") == (
        "fedavg --aggregator krum:2 --byzantine 0.2:sign-flip"
    )
    assert label("ring", overlap=True, compress="fp16") == "ring --overlap --compress fp16"
    assert label("ring", accumulate_steps=4) == "ring --accumulate-steps 4"
    assert label("ring", accumulate_steps=1) == "ring"
    assert label("ps", ps_mode="async") == "ps --ps-mode async" and label("ps", ps_mode="sync") == "ps"
    assert label("ps") == "ps"  # files without ps_mode ran sync
    assert label("ssp", ps_mode="ssp") == "ssp"  # its own strategy name already says it
    hierarchical = {"strategy": "ring", "config": {"allreduce": "hierarchical"}, "options": ["allreduce"]}
    assert strategy_label(RunResults("f.h5", hierarchical)) == "ring --allreduce hierarchical"
    assert label("ring", allreduce="hierarchical") == "ring"  # a file without options: ring took no --allreduce
    emulated = {"strategy": "ps", "config": {"emulate_link": "50,1"}, "options": ["emulate_link"]}
    assert strategy_label(RunResults("f.h5", emulated)) == "ps --emulate-link 50,1"  # every table says so
    frozen = {"strategy": "ddp", "config": {"freeze": "auto:0.5", "freeze_cache": True, "freeze_every": 30},
              "options": ["freeze", "freeze_cache", "freeze_every"]}  # fmt: skip
    assert strategy_label(RunResults("f.h5", frozen)) == "ddp --freeze auto:0.5 --freeze-cache"


def test_schedule_is_read_from_the_file_and_old_files_use_the_compatibility_table(tmp_path):
    """A file that records its schedule is read by it, whatever its strategy's name (a new strategy needs no entry
    in analysis); files without it fall back to roles and DECOUPLED: ps async and old ssp (ps_mode sync)
    decoupled, ps sync lock-step, an aggregator's rounds. Catches: the attribute ignored, or the table lost."""
    from analysis.stats.metrics import schedule

    assert schedule(ring_run(tmp_path / "n.h5", 2, 0.1, strategy="newway", attrs={"schedule": "decoupled"})) == (
        "decoupled"
    )
    assert schedule(ps_run(tmp_path / "a.h5", 1, 2, 0.1, cfg={"ps_mode": "async"})) == "decoupled"
    assert schedule(ps_run(tmp_path / "s.h5", 1, 2, 0.1)) == "lockstep"
    old_ssp = write_run(tmp_path / "o.h5", ["server", "worker", "worker"], 0.1, strategy="ssp", cfg={"ps_mode": "sync"})
    assert schedule(old_ssp) == "decoupled"  # ssp files once stored ps_mode sync
    assert schedule(ring_run(tmp_path / "r.h5", 2, 0.1)) == "lockstep"


def test_across_share_is_bytes_to_other_nodes_over_bytes_sent_after_the_warm_up(tmp_path):
    """Every rank sends 1,000 bytes per layer and step (2 layers, 5 steps): 2,000 per row. Across nodes: rank 0
    500 per layer from step 2 on and 250 in step 1, rank 1 none, and the warm-up step 0 a huge 10^6 that must be
    left out. Share = (2 x 250 + 3 x 2 x 500) / (2 ranks x 4 steps x 2,000) = 3,500 / 16,000 = 0.21875 (leaving
    out two steps instead would give 0.25). A file without the count (before it, or ddp's): NaN, not 0 %; bytes
    across with none sent recorded: NaN, not infinity."""
    from analysis.stats.metrics import across_share

    across = np.zeros((2, 5, 2), dtype=np.int64)
    across[0, 1:] = 500
    across[0, 1] = 250
    across[:, 0] = 1_000_000
    run = ring_run(tmp_path / "a.h5", 2, 0.1, extra={"timing/comm_bytes_across": (across, "bytes")})
    assert across_share(run) == pytest.approx(0.21875)
    assert np.isnan(across_share(ring_run(tmp_path / "b.h5", 2, 0.1)))
    silent = {"timing/comm_bytes_across": (across, "bytes"), "timing/comm_bytes": (np.zeros_like(across), "bytes")}
    assert np.isnan(across_share(ring_run(tmp_path / "c.h5", 2, 0.1, extra=silent)))


def test_ranks_a_resumed_segment_did_not_have_are_left_out_of_the_means(tmp_path):
    """A fedavg run resumed on more ranks: the new host's rows before the resume are NaN (results/README.md). The
    phase totals and the per-layer means are then the mean over the ranks that recorded each row, written out by
    hand; the file read lazily (blockwise) and the arrays in memory agree."""
    from analysis.data.load import load
    from analysis.stats.metrics import per_layer_mean, phase_totals
    from bench.measure.results import write

    comm = np.array([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [[np.nan, np.nan], [np.nan, np.nan], [7.0, 8.0]]])
    data = {"timing/comm": comm, "timing/step": np.nansum(comm, axis=2) + 1.0}
    ranks = np.array([0, 1])
    # rows 1 and 2 (after warm-up 1): row 1 only rank 0 recorded (3 + 4), row 2 both ((5 + 6 + 7 + 8) / 2)
    assert phase_totals(data, ranks, 1)["comm"] == pytest.approx(7.0 + 13.0)
    by_hand = [(3.0 + 5.0 + 7.0) / 3, (4.0 + 6.0 + 8.0) / 3]  # layer means over the recorded cells
    assert per_layer_mean(data, "timing/comm", ranks, 1).tolist() == pytest.approx(by_hand)
    path = tmp_path / "nan.h5"
    stored = {name: (values, "s") for name, values in data.items()}
    write(str(path), {"strategy": "fedavg", "world_size": 2, "roles": ["aggregator", "client_host"]}, stored)
    assert per_layer_mean(load(path).data, "timing/comm", ranks, 1).tolist() == pytest.approx(by_hand)
    full = np.ones((2, 3, 2))
    assert phase_totals({"timing/comm": full, "timing/step": full.sum(axis=2)}, ranks, 1)["comm"] == 4.0


def test_across_time_share_is_time_exchanging_with_other_nodes_over_communication_and_waiting(tmp_path):
    """Per rank, row and layer: rank 0 communicates 0.1 s per layer per step, rank 1 0.3 s, and rank 1 waits on
    peers 0.2 s per step (a blocking receive of replies, timed across too); across nodes rank 0 0.05 per layer from
    step 1 on, rank 1 0.3; warm-up step 0 a huge 100 s left out. A third rank with no communication time (a server,
    whose sends are not in timing/comm) but 1 s across per step must not count. Share = (4 x 2 x 0.05 + 4 x 2 x 0.3)
    / (4 x 2 x 0.1 + 4 x 2 x 0.3 + 4 x 0.2) = 2.8 / 4.0 = 0.7 (without the waiting 0.875)."""
    from analysis.stats.metrics import across_time_share

    comm = np.zeros((3, 5, 2))
    comm[0], comm[1] = 0.1, 0.3
    across = np.zeros((3, 5, 2))
    across[0, 1:], across[1, 1:], across[2, 1:] = 0.05, 0.3, 0.5
    across[:, 0] = 100.0
    wait = np.zeros((3, 5))
    wait[1] = 0.2
    extra = {"timing/comm_across": (across, "s"), "timing/comm": (comm, "s"), "timing/wait": (wait, "s")}
    run = ring_run(tmp_path / "a.h5", 3, 0.1, extra=extra)
    assert across_time_share(run) == pytest.approx(0.7)
    assert np.isnan(across_time_share(ring_run(tmp_path / "b.h5", 3, 0.1)))
    silent = {"timing/comm_across": (across, "s"), "timing/comm": (np.zeros_like(comm), "s")}
    assert np.isnan(across_time_share(ring_run(tmp_path / "c.h5", 3, 0.1, extra=silent)))

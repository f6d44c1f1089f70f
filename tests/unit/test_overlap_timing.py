"""Overlapped communication's timing (bench.measure.buckets) and the step breakdown the analysis derives from it
(analysis.stats.metrics.overlap_split, the report's overlap table), against closed forms."""

import numpy as np
import pytest

from analysis.models.costmodel import Fit, allreduce_time
from analysis.models.overlap import replay_exposed
from analysis.models.prediction import predict
from analysis.stats.metrics import compute_ranks, overlap_split, phase_totals
from analysis.views.overlap import overlap_table
from bench.measure.buckets import BucketTiming, exposed_comm, record_buckets, serialised
from tests.analysis_fixtures import ring_run


def bucket(comm_start, comm_end, pack=0.0, shares=None, sent=100):
    return BucketTiming(shares or {0: 1.0}, comm_start - pack, comm_start, comm_end, comm_end + pack, sent)


def test_buckets_done_before_backward_ends_are_all_hidden():
    assert exposed_comm([bucket(1.0, 2.0), bucket(2.0, 3.0)], compute_end=5.0) == [0.0, 0.0]


def test_a_bucket_running_past_backward_is_exposed_from_there():
    assert exposed_comm([bucket(1.0, 2.0), bucket(2.0, 7.0)], compute_end=5.0) == [0.0, 2.0]


def test_nothing_overlaps_without_overlap():
    """Buckets that start after backward (the non-overlapped schedule) are exposed in full."""
    assert exposed_comm([bucket(5.0, 6.0), bucket(6.0, 8.5)], compute_end=5.0) == [1.0, 2.5]


def test_waiting_is_counted_once_whatever_the_order_of_completion():
    """Two buckets completing after backward: each is exposed only from where the previous one completed, so the
    total is last end - compute end (catches: each measured from compute_end, which counts the wait twice)."""
    buckets = [bucket(4.0, 9.0), bucket(4.5, 7.0)]
    exposed = exposed_comm(buckets, compute_end=5.0)
    assert exposed == [2.0, 2.0] and sum(exposed) == pytest.approx(9.0 - 5.0)


def test_packing_the_thread_waited_for_is_not_communication():
    """The training thread waits from 5 to 8 for a bucket that packs 5-6, communicates 6-7, unpacks 7-8: exposed
    communication is 1 s, never more than the bucket's communication (catches: exposed = whole wait)."""
    [exposed] = exposed_comm([bucket(6.0, 7.0, pack=1.0)], compute_end=5.0)
    assert exposed == pytest.approx(1.0)


def test_record_buckets_shares_by_bytes_and_one_rank_is_local_work():
    names = ("timing/comm", "timing/exposed", "timing/pack", "timing/comm_bytes")
    rec = {name: np.zeros((1, 3), dtype=np.int64 if "bytes" in name else np.float64) for name in names}
    record_buckets(rec, 0, [bucket(4.0, 6.0, pack=0.5, shares={0: 0.75, 2: 0.25}, sent=400)], compute_end=5.0)
    assert rec["timing/comm"][0] == pytest.approx([1.5, 0.0, 0.5])
    assert rec["timing/exposed"][0] == pytest.approx([0.75, 0.0, 0.25])
    assert rec["timing/pack"][0] == pytest.approx([0.75, 0.0, 0.25])
    assert list(rec["timing/comm_bytes"][0]) == [300, 0, 100]
    alone = {name: np.zeros((1, 1)) for name in names}
    record_buckets(alone, 0, [bucket(4.0, 6.0, sent=0)], compute_end=5.0)
    assert alone["timing/comm"][0, 0] == 0 and alone["timing/exposed"][0, 0] == 0 and alone["timing/pack"][0, 0] == 2


def overlapped_run(path, exposed_s):
    """2 peers, 1.0 s steps: forward 0.2, backward 0.4, optimizer 0.1, communication 0.5 of which ``exposed_s``
    exposed, packing 0.05 (on the communication thread)."""
    shape = (2, 5, 2)
    exposed = np.full(shape, exposed_s / 2)
    kw = dict(comm_s=0.5, fwd_s=0.2, bwd_s=0.4, opt_s=0.1, pack_s=0.05)
    return ring_run(path, 2, 1.0, cfg={"overlap": True}, extra={"timing/exposed": (exposed, "s")}, **kw)


def test_overlap_split_adds_up_to_the_step_and_gives_htas_percentage(tmp_path):
    split = overlap_split(overlapped_run(tmp_path / "o.h5", 0.2), warmup=1)
    assert split.computing_s == pytest.approx(4 * 0.7) and split.exposed_s == pytest.approx(4 * 0.2)
    assert split.overlapped_s == pytest.approx(4 * 0.3) and split.free_s == pytest.approx(4 * 0.1)
    assert split.computing_s + split.exposed_s + split.free_s == pytest.approx(split.step_s)
    assert split.overlap_percent == pytest.approx(60.0)


def test_without_overlap_all_communication_is_exposed(tmp_path):
    run = ring_run(tmp_path / "p.h5", 2, 1.0, comm_s=0.2, fwd_s=0.2, bwd_s=0.4, opt_s=0.1)
    split = overlap_split(run, warmup=1)
    assert split.exposed_s == pytest.approx(4 * 0.2) and split.overlap_percent == 0.0
    assert phase_totals(run.data, compute_ranks(run))["other"] == pytest.approx(4 * 0.1)


def test_overlapped_phases_leave_the_hidden_part_out_of_other(tmp_path):
    """other = step - (forward + backward + optimizer + exposed): 1 - 0.7 - 0.2 (catches: comm subtracted whole,
    which leaves 0 after clipping)."""
    run = overlapped_run(tmp_path / "o.h5", 0.2)
    assert phase_totals(run.data, compute_ranks(run))["other"] == pytest.approx(4 * 0.1)


def test_overlap_table_only_when_a_run_overlapped(tmp_path):
    plain = ring_run(tmp_path / "p.h5", 2, 1.0, comm_s=0.2, fwd_s=0.2, bwd_s=0.4, opt_s=0.1)
    assert overlap_table([plain], warmup=1).empty
    table = overlap_table([plain, overlapped_run(tmp_path / "o.h5", 0.2)], warmup=1)
    text = table.markdown()
    assert len(table.rows) == 2 and "| yes |" in text and "| no |" in text and "60.0" in text


def test_replay_launches_buckets_as_the_backward_pass_finishes_their_layers():
    """Backward times per layer 1, 2, 3 s, run last layer first: layer 2 done at 3 s, layer 1 at 5, layer 0 at 6.
    Per-layer buckets of 1 s end at 4, 6 and 7: 1 s exposed (catches: buckets ready in layer-index order)."""
    assert replay_exposed(np.array([1.0, 2.0, 3.0]), [[2], [1], [0]], [1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert replay_exposed(np.array([1.0, 2.0, 3.0]), [[2], [1], [0]], [4.0, 0.0, 0.0]) == pytest.approx(1.0)
    assert replay_exposed(np.array([1.0, 2.0, 3.0]), [[2, 1, 0]], [2.0]) == pytest.approx(2.0)  # one bucket: none hid
    assert replay_exposed(np.array([1.0, 2.0, 3.0]), [[2], [1], [0]], [0.5, 0.5, 0.0]) == 0.0


def test_an_overlapped_run_is_predicted_with_its_exposed_part_only(tmp_path):
    """Same measured run, once marked overlapped: the overlapped prediction adds the replayed exposed time (here
    the last layer's bucket, 2 layers of 0.2 s backward each) instead of all communication."""
    fit = Fit.given(1e-3, 1e-6)
    plain = predict(ring_run(tmp_path / "p.h5", 2, 1.0, comm_s=0.5, fwd_s=0.2, bwd_s=0.4, opt_s=0.1), fit, [4])[0]
    hidden = predict(overlapped_run(tmp_path / "o.h5", 0.2), fit, [4])[0]
    per_bucket = allreduce_time(4000.0, 4, fit)
    assert plain.step_s == pytest.approx(0.5 + 2 * per_bucket)  # step 1 - comm 0.5, + 2 buckets
    assert per_bucket < 0.2  # so the first bucket is done before the second is ready
    assert hidden.step_s == pytest.approx(0.8 + per_bucket)  # step 1 - exposed 0.2, + the last bucket


def test_buckets_in_flight_together_count_the_wall_time_once():
    """DDP launches buckets at 0 and 1 s that complete at 5 and 6 s (queued together in gloo): 5 + 1 = 6 s of
    communication, the union of the two intervals, not 5 + 5 (catches: launch-to-completion summed)."""
    first, second = serialised([bucket(1.0, 6.0, shares={1: 1.0}), bucket(0.0, 5.0, shares={0: 1.0})])
    assert (first.shares, first.comm, second.shares, second.comm) == ({0: 1.0}, 5.0, {1: 1.0}, 1.0)
    one_after_another = [bucket(0.0, 1.0), bucket(2.0, 3.0)]
    assert [b.comm for b in serialised(one_after_another)] == [1.0, 1.0]


def test_tables_tell_an_overlapped_ring_from_the_ring(tmp_path):
    """The same strategy with another schedule gets its own name in every table (catches: two rows both "ring")."""
    from analysis.views.core import communication_table, strategy_table

    plain = ring_run(tmp_path / "p.h5", 2, 1.0, comm_s=0.2, fwd_s=0.2, bwd_s=0.4, opt_s=0.1)
    runs = [plain, overlapped_run(tmp_path / "o.h5", 0.2)]
    for table in (communication_table(runs, 1), strategy_table(runs, 1)):
        text = table.markdown()
        assert "| ring --overlap |" in text and "| ring |" in text, text

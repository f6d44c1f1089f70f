"""--stop-file: the Slurm scripts turn the time-limit warning into a file the ranks poll at agreed steps."""

from bench.runtime.signals import StopFlag


def test_no_file_no_stop(tmp_path):
    flag = StopFlag()
    flag.poll_file(str(tmp_path / "absent"))
    flag.poll_file("")
    assert not flag


def test_file_text_is_the_reason(tmp_path):
    path = tmp_path / "stop"
    path.write_text("SIGUSR1\n")
    flag = StopFlag()
    flag.poll_file(str(path))
    assert flag and flag.signal_name == "SIGUSR1"


def test_empty_file_names_itself_and_a_signal_wins(tmp_path):
    path = tmp_path / "stop"
    path.write_text("")
    flag = StopFlag()
    flag.poll_file(str(path))
    assert flag.signal_name == f"stop file {path}"
    signalled = StopFlag()
    signalled.signal_name = "SIGTERM"
    signalled.poll_file(str(path))
    assert signalled.signal_name == "SIGTERM"


def test_divergence_code_orders_by_row_then_rank():
    """The ranks agree with one MIN over row * size + rank: the earliest row wins, then the lowest rank."""
    from bench.run.divergence import NOT_DIVERGED, Divergence

    seen = [Divergence(rank, 4) for rank in range(4)]
    seen[3].note(5, float("nan"))
    seen[1].note(7, float("inf"))
    seen[1].note(5, float("nan"))  # only the first non-finite row counts
    seen[2].note(6, 1.0)  # finite: nothing
    assert seen[2].code == NOT_DIVERGED and seen[0].code == NOT_DIVERGED
    agreed = min(d.code for d in seen)
    assert [d.agree(agreed) for d in seen] == [True] * 4
    assert seen[0].agreed == (5, 3) and seen[1].row == 7
    assert seen[3].message("step") == "non-finite values at step 6 on rank 3: loss = nan"  # row 5: the 6th step
    assert seen[0].message("round") == "non-finite values at round 6 on rank 3"
    assert not Divergence(0, 2).agree(NOT_DIVERGED)

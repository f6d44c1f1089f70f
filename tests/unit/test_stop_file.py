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

"""``python -m analysis report`` end to end on files from real short runs of every strategy and a microbenchmark
file for the cost model. The runs are the commands' own paths in this job (tests/mpi/commands.py; they were seven
launches of about 3 s each in tests/smoke); the report and the trace are the real ``analysis`` commands, run by
rank 0 as a user runs them."""

import subprocess
import sys
from pathlib import Path

import pytest
from mpi4py import MPI

from tests.helpers import ROOT

from .commands import command_in_job, train_in_job
from .test_train_command import on_rank_0

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(300)]

RUNS = {
    "ring": ["--strategy", "ring"],
    "localsgd": ["--strategy", "localsgd", "--local-steps", "2"],
    "ps": ["--strategy", "ps"],
    "ps-async": ["--strategy", "ps", "--ps-mode", "async"],
    "ssp": ["--strategy", "ssp", "--staleness", "1"],
}
TITLES = ("speedup and efficiency", "Communication vs computation", "Strategy comparison", "FedAvg runs",
          "Cost model", "Runs behind this report")  # fmt: skip


def analysis(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_report_on_every_strategy(shared_tmp):
    comm = MPI.COMM_WORLD
    if comm.size != 2:
        pytest.skip("2 ranks: the fewest every strategy runs on")
    runs = Path(shared_tmp) / "results"
    common = ["--model", "mlp", "--steps", "12", "--quiet", "--trace", "--eval-every", "6"]
    codes = [train_in_job(*args, *common, "--out", str(runs / f"{name}.h5")).code for name, args in RUNS.items()]
    fedavg = ["--strategy", "fedavg", "--clients", "6", "--rounds", "3", "--model", "mlp", "--quiet"]
    codes.append(train_in_job(*fedavg, "--out", str(runs / "fedavg.h5")).code)
    micro = ["micro", "--impl", "ours,mpi", "--max", "65536", "--iters", "5", "--out", str(runs / "micro.h5")]
    codes.append(command_in_job(*micro).code)
    assert comm.allreduce(max(codes), op=MPI.MAX) == 0, codes

    def check():
        out = Path(shared_tmp) / "report"
        proc = analysis("report", str(runs), "-o", str(out), "--figures-for", "ring.h5")
        assert proc.returncode == 0, proc.stderr
        report = (out / "report.md").read_text()
        assert all(title in report for title in TITLES), report[:2000]
        assert all(f"{name}.h5" in report for name in RUNS)
        figures = {p.name for p in (out / "figures").iterdir()}
        assert {"accuracy.png", "staleness.png", "fedavg.png", "timeline_ring.png", "layers_ring.pdf"} <= figures
        assert len([f for f in figures if f.startswith("layers_")]) == 2 * 5  # 4 first by name + ring (png, pdf)
        proc = analysis("trace", str(runs / "ring.h5"), "-o", str(out / "t.json"))
        assert proc.returncode == 0 and (out / "t.json").stat().st_size > 1000, proc.stderr

    on_rank_0(check)
